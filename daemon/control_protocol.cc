#include "daemon/control_protocol.h"

#include "daemon/control_socket.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "codec/chunk.h"
#include "codec/layout.h"

namespace tpde {

using Json = nlohmann::json;

Json StatsToJson(const StoreStats& s) {
  Json j;
  j["files"] = s.files;
  j["directories"] = s.directories;
  j["logical_bytes"] = s.logical_bytes;
  j["stored_bytes"] = s.stored_bytes;
  j["ratio"] = s.stored_bytes == 0 ? 0.0 : double(s.logical_bytes) / double(s.stored_bytes);
  j["detached_objects"] = s.detached_objects;
  j["detached_bytes"] = s.detached_bytes;
  j["pending_demotions"] = s.pending_demotions;
  j["disk_bytes"] = s.disk_bytes;
  j["garbage_bytes"] = s.garbage_bytes;
  j["per_file"] = Json::array();
  for (const auto& f : s.per_file) {
    Json jf;
    jf["path"] = f.path;
    jf["ino"] = f.ino;
    jf["kind"] = FileKindName(f.kind);
    jf["kind_id"] = static_cast<int>(f.kind);
    jf["file_bytes"] = f.file_bytes;
    jf["stored_bytes"] = f.stored_bytes;
    jf["ratio"] = f.stored_bytes == 0 ? 0.0 : double(f.file_bytes) / double(f.stored_bytes);
    jf["chain_depth"] = f.chain_depth;
    jf["object"] = f.object;
    jf["reference"] = f.reference;
    for (int m = 0; m < 4; ++m) {
      const char* name = ChunkModeName(static_cast<ChunkMode>(m));
      jf["chunks"][name] = f.chunks_by_mode[m];
      jf["payload_bytes"][name] = f.stored_bytes_by_mode[m];
    }
    j["per_file"].push_back(jf);
  }
  return j;
}

StoreStats StatsFromJson(const Json& j) {
  StoreStats s;
  s.files = j.value("files", 0ull);
  s.directories = j.value("directories", 0ull);
  s.logical_bytes = j.value("logical_bytes", 0ull);
  s.stored_bytes = j.value("stored_bytes", 0ull);
  s.detached_objects = j.value("detached_objects", 0ull);
  s.detached_bytes = j.value("detached_bytes", 0ull);
  s.pending_demotions = j.value("pending_demotions", 0ull);
  s.disk_bytes = j.value("disk_bytes", 0ull);
  s.garbage_bytes = j.value("garbage_bytes", 0ull);
  for (const auto& jf : j.value("per_file", Json::array())) {
    FileStats f;
    f.path = jf.value("path", "");
    f.ino = jf.value("ino", 0ull);
    f.kind = static_cast<FileKind>(jf.value("kind_id", 3));
    f.file_bytes = jf.value("file_bytes", 0ull);
    f.stored_bytes = jf.value("stored_bytes", 0ull);
    f.chain_depth = jf.value("chain_depth", 0);
    f.object = jf.value("object", 0ull);
    f.reference = jf.value("reference", 0ull);
    for (int m = 0; m < 4; ++m) {
      const char* name = ChunkModeName(static_cast<ChunkMode>(m));
      f.chunks_by_mode[m] = jf["chunks"].value(name, 0ull);
      f.stored_bytes_by_mode[m] = jf["payload_bytes"].value(name, 0ull);
    }
    s.per_file.push_back(std::move(f));
  }
  return s;
}

Json VerifyToJson(const VerifyReport& r) {
  return Json{{"files", r.files}, {"objects", r.objects}, {"chunks", r.chunks}, {"bytes", r.bytes},
              {"errors", r.errors}};
}

VerifyReport VerifyFromJson(const Json& j) {
  VerifyReport r;
  r.files = j.value("files", 0ull);
  r.objects = j.value("objects", 0ull);
  r.chunks = j.value("chunks", 0ull);
  r.bytes = j.value("bytes", 0ull);
  r.errors = j.value("errors", std::vector<std::string>());
  return r;
}

std::string ControlSocketPath(const std::string& store_dir) {
  return (std::filesystem::path(store_dir) / "control.sock").string();
}

bool DaemonListening(const std::string& socket_path, bool* permission_denied) {
  int fd = ConnectControlSocket(socket_path);
  if (permission_denied) *permission_denied = fd < 0 && (errno == EACCES || errno == EPERM);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

Status ControlCall(const std::string& socket_path, const Json& request, Json* response) {
  int fd = ConnectControlSocket(socket_path);
  if (fd < 0 && (errno == EACCES || errno == EPERM)) {
    return Status::IOError(fmt::format("permission denied on the control socket '{}'", socket_path));
  }
  if (fd < 0) return Status::IOError(fmt::format("no daemon on '{}': {}", socket_path, std::strerror(errno)));
  if (!SendWithFds(fd, request.dump() + "\n")) {
    const int err = errno;
    ::close(fd);
    return Status::IOError(fmt::format("control socket write: {}", std::strerror(err)));
  }
  std::string reply;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  Json j = Json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::IOError("control socket: malformed reply");
  if (!j.value("ok", false)) return Status::IOError(j.value("error", std::string("daemon error")));
  *response = std::move(j);
  return Status::OK();
}

}  // namespace tpde
