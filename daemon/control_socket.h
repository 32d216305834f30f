// The control socket's transport (a Unix stream socket, unix(7)), shared by
// both ends of the protocol (daemon/control_protocol.h): tpded, tpdectl and
// the loader (client/loader.cc), which links this and nothing of the store.
// Lines may carry file descriptors as SCM_RIGHTS ancillary data on their
// first byte (cmsg(3)).
// Thread-safety: none needed; each call uses only its arguments.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/unique_fd.h"

namespace tpde {

// A connected socket to the daemon at `path`, close-on-exec, or -1 with
// errno set (ENAMETOOLONG for a path longer than sun_path; ENOENT or
// ECONNREFUSED: no daemon; EACCES: not allowed to reach it).
int ConnectControlSocket(const std::string& path);

// Sends all of `text`, with `fds` (not owned; may be empty) attached to its
// first byte. False if the socket failed (errno says why; EPIPE when the
// peer is gone, no SIGPIPE); then nothing more of the line is sent.
bool SendWithFds(int sock, std::string_view text, const std::vector<int>& fds = {});

// One recvmsg(2) of at most `len` bytes into `buf` (EINTR retried); the
// descriptors that came with them, at most `max_fds`, are appended to *fds
// (owned, close-on-exec). Returns recvmsg's result: bytes, 0 at end of
// stream, -1 on error.
ssize_t RecvWithFds(int sock, char* buf, size_t len, size_t max_fds, std::vector<UniqueFd>* fds);

}  // namespace tpde
