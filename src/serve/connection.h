// Whether an HTTP client is still there while its request waits for an answer. cpp-httplib (0.11, Debian 12)
// notices a client that has gone only when it writes to it; a non-streaming request writes once, at the end, so
// its answer would keep a slot until done. The kernel knows sooner: once the client closes the connection the
// server's socket of it waits in CLOSE_WAIT, which Linux lists in /proc/net/tcp (tcp6 for IPv6).
#pragma once

#include <string>

namespace coenc::serve {

// One TCP connection as the server sees it (httplib::Request's local_addr, local_port, remote_addr, remote_port).
struct Connection {
  std::string local_addr;
  int local_port = -1;
  std::string remote_addr;
  int remote_port = -1;
};

// True when the client has closed `c` (its socket on this side is in CLOSE_WAIT or CLOSE). False when it is
// open, and when this cannot be told (no /proc/net/tcp, an address that does not parse, no such connection):
// a request is never cancelled on a guess.
bool client_has_closed(const Connection& c);

}  // namespace coenc::serve
