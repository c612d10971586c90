// Test helper: the tests' name for herald::durable::LocalCluster (a throwaway PostgreSQL
// cluster on a Unix socket; herald/postgres/local_cluster.hpp), which `herald demo` uses too.
#pragma once

#include <herald/postgres/local_cluster.hpp>

namespace herald::testing {
using PgCluster = durable::LocalCluster;
}  // namespace herald::testing
