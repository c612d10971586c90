// Builds the ZeroMQ transport a configuration asks for.
#pragma once

#include <herald/events/transport.hpp>
#include <herald/worker/config.hpp>

#include <memory>

namespace herald {

/// A started-on-demand ZeroMQ publisher for `config` (Transport::start() binds/connects).
std::shared_ptr<Transport> make_zmq_transport(const ZmqTransportConfig& config);

}  // namespace herald
