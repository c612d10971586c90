// Scenario S7, --listen variant: the sender process. Reads a JSON Lines file of step completions
// and sends each line as one ZeroMQ message over PUSH (what `herald run --listen` PULLs), then
// waits until every message has left (linger), so that the run's wall time can end when the
// receiver has audited them all.
//
//   s7_sender ENDPOINT FILE      e.g. s7_sender ipc:///tmp/s7.ipc steps.jsonl
//
// Prints "sent N in S s" on stderr. Exit status 2 for bad arguments or an unreadable file.
#include <zmq.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ENDPOINT FILE\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[2]);
  if (!in) {
    std::fprintf(stderr, "s7_sender: cannot read '%s'\n", argv[2]);
    return 2;
  }
  zmq::context_t context(1);
  zmq::socket_t push(context, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, -1);      // deliver everything before exiting
  push.set(zmq::sockopt::sndhwm, 10'000);  // back-pressure from the receiver, never a drop
  push.connect(argv[1]);
  const auto start = std::chrono::steady_clock::now();
  std::string line;
  std::uint64_t sent = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    push.send(zmq::buffer(line), zmq::send_flags::none);
    ++sent;
  }
  push.close();
  context.close();  // returns once linger has delivered every message
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::fprintf(stderr, "s7_sender: sent %llu in %.3f s\n", static_cast<unsigned long long>(sent),
               took.count());
  return 0;
}
