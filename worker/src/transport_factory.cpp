#include "transport_factory.hpp"

#include <herald/zeromq/curve.hpp>
#include <herald/zeromq/transport.hpp>

namespace herald {

std::shared_ptr<Transport> make_zmq_transport(const ZmqTransportConfig& config) {
  ZmqPublisherOptions options;
  options.endpoints = config.publish;
  options.bind = config.bind;
  options.sndhwm = config.send_hwm;
  options.linger = config.linger;
  options.encoding = config.encoding;
  // CURVE: the binding side is the server (its secret key plus an allow-list of clients); the
  // connecting side is a client of the server key it names, with its own secret key if given.
  std::vector<std::string> allowed;
  for (const auto& file : config.curve_allow) allowed.push_back(read_curve_public_key(file));
  if (config.bind && config.curve_secret_key) {
    options.curve = CurveOptions::make_server(read_curve_secret_key(*config.curve_secret_key), allowed);
  } else if (!config.bind && config.curve_server_key) {
    options.curve = CurveOptions::make_client(
        read_curve_public_key(*config.curve_server_key),
        config.curve_secret_key ? read_curve_secret_key(*config.curve_secret_key) : std::string());
  }
  return std::make_shared<ZmqPublisher>(std::move(options));
}

}  // namespace herald
