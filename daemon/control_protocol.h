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
//   bundle {"path": P, "stream": S}
//                       -> {"bundle_bytes": N, "file_bytes": F, "chain_depth": D}
//                          The file's chain bundle (codec/chain_bundle.h),
//                          for the loader (client/). The request must carry,
//                          with its first byte (SCM_RIGHTS), a descriptor
//                          of the file opened for reading through this
//                          daemon's mount: the kernel checked the caller's
//                          permissions at that open, so the bundle is of
//                          that inode only (P is for messages). After it,
//                          the request may pass up to kMaxBundleBuffers
//                          memfds of one size (whole kBundleBlockBytes) as
//                          buffers: the bundle is written into them, dealt
//                          out as BundleBufferSpot says; buffers too small
//                          answer {"ok": false, "need_bytes": N}. With S
//                          true, the reply comes once the tables are
//                          written, with "streaming": true, and is followed
//                          by progress lines {"ready": K} (chunks [0, K)
//                          written) and a last {"ready": n, "done": true},
//                          or {"ok": false, "error": ...} if the fill
//                          failed. Without buffers, the bundle comes in a
//                          new sealed memfd passed with the reply's first
//                          byte. A file not committed yet answers
//                          {"ok": false, "not_committed": true, ...}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "codec/status.h"
#include "store/store.h"

namespace tpde {

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
