// The control protocol between tpdectl and a running tpded.
//
// A Unix stream socket (default STORE/control.sock, mode 0660). The client
// sends one JSON object on one line, {"cmd": C, ...}; the daemon answers one
// JSON object on one line, {"ok": true, ...} or {"ok": false, "error": "...",
// "code": N} (N: the Status::Code value),
// and closes the connection. Commands:
//   stats  {"path": P}  -> {"stats": StoreStats}
//   verify              -> {"verify": VerifyReport}
//   flush               -> {}            (waits until every closed file is committed)
//   gc                  -> {}            (re-bases and frees deleted references)
//   status              -> {"status": {...counters...}}
//   bundle {"path": P}  -> {"bundle_bytes": N, "parts": [B0, B1, ...],
//                           "file_bytes": F, "chain_depth": D}
//                          plus one sealed memfd per part (at most
//                          kMaxBundleParts), passed with the reply's first
//                          byte (SCM_RIGHTS): the file's chain bundle
//                          (codec/chain_bundle.h) cut into consecutive
//                          parts of B0, B1, ... bytes (all but the last a
//                          whole number of pages; N = their sum), for the
//                          loader (client/), which maps them back to back.
//                          The request may pass, after the file's
//                          descriptor, up to kMaxBundleParts memfds of one
//                          size S (whole pages) as buffers: the bundle is
//                          then written into them (byte o at o % S of
//                          buffer o / S) and none is passed back; buffers
//                          too small answer {"ok": false, "need_bytes": N}. The request must carry, with its
//                          first byte (SCM_RIGHTS), a descriptor of the file
//                          opened for reading through this daemon's mount:
//                          the kernel has checked the caller's permissions
//                          at that open, so the bundle is sent for that
//                          inode only (P is for messages). A file not
//                          committed yet answers {"ok": false,
//                          "not_committed": true, ...}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "codec/status.h"
#include "store/store.h"

namespace tpde {

// The most memfds one "bundle" reply passes (see daemon/bundle_memfd.h).
constexpr size_t kMaxBundleParts = 32;

nlohmann::json StatsToJson(const StoreStats& s);
StoreStats StatsFromJson(const nlohmann::json& j);
nlohmann::json VerifyToJson(const VerifyReport& r);
VerifyReport VerifyFromJson(const nlohmann::json& j);

// The control socket of the store in `store_dir`.
std::string ControlSocketPath(const std::string& store_dir);

// Sends `request` and reads the response. IOError if no daemon listens;
// the daemon's error (ok: false) comes back as an IOError with its message.
Status ControlCall(const std::string& socket_path, const nlohmann::json& request, nlohmann::json* response);

// True if a daemon answers on `socket_path`. When it does not because the
// socket's permissions keep the caller out, *permission_denied is set.
bool DaemonListening(const std::string& socket_path, bool* permission_denied = nullptr);

}  // namespace tpde
