#include "serve/connection.h"

#include <arpa/inet.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace coenc::serve {

namespace {

// An address as /proc/net/tcp[6] prints it: each 32-bit word of the address in network order, read as a host
// (little-endian) integer and printed "%08X"; then ":" and the port "%04X". Empty when `addr` does not parse.
// Whether it belongs in tcp6 goes to `v6`.
std::string proc_address(const std::string& addr, int port, bool* v6) {
  unsigned char bytes[16];
  int n = 0;
  if (inet_pton(AF_INET, addr.c_str(), bytes) == 1) n = 4, *v6 = false;
  else if (inet_pton(AF_INET6, addr.c_str(), bytes) == 1) n = 16, *v6 = true;
  else return {};
  std::string out;
  char hex[8];
  for (int w = 0; w < n; w += 4)
    for (int b = 3; b >= 0; --b) {
      std::snprintf(hex, sizeof hex, "%02X", bytes[w + b]);
      out += hex;
    }
  std::snprintf(hex, sizeof hex, ":%04X", port & 0xffff);
  return out + hex;
}

}  // namespace

bool client_has_closed(const Connection& c) {
  if (c.local_port < 0 || c.remote_port < 0) return false;
  bool local_v6 = false, remote_v6 = false;
  const std::string local = proc_address(c.local_addr, c.local_port, &local_v6);
  const std::string remote = proc_address(c.remote_addr, c.remote_port, &remote_v6);
  if (local.empty() || remote.empty() || local_v6 != remote_v6) return false;
  std::ifstream table(local_v6 ? "/proc/net/tcp6" : "/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, l, r, state;
    if (!(fields >> slot >> l >> r >> state)) continue;
    if (l == local && r == remote) return state == "08" || state == "07";  // CLOSE_WAIT, CLOSE
  }
  return false;
}

}  // namespace coenc::serve
