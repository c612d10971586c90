// herald::postgres: everything of the durable road (publisher, consumer, admin functions).
#pragma once

#include <herald/postgres/admin.hpp>
#include <herald/postgres/common.hpp>
#include <herald/postgres/config.hpp>
#include <herald/postgres/consumer.hpp>
#include <herald/postgres/publisher.hpp>
#include <herald/postgres/retention.hpp>
