#include "store/inode.h"

#include "store/coding.h"

namespace tpde {

namespace {
constexpr uint8_t kInodeVersion = 1;
}

void SerializeInode(const Inode& n, std::string* out) {
  out->clear();
  PutFixed8(out, kInodeVersion);
  PutFixed8(out, static_cast<uint8_t>(n.type));
  PutFixed32(out, n.mode);
  PutFixed32(out, n.uid);
  PutFixed32(out, n.gid);
  PutFixed32(out, n.nlink);
  PutFixed64(out, n.ino);
  PutFixed64(out, n.parent);
  PutFixed64(out, n.size);
  PutFixed64(out, static_cast<uint64_t>(n.mtime_ns));
  PutFixed64(out, static_cast<uint64_t>(n.ctime_ns));
  PutFixed64(out, n.object);
  PutLengthPrefixed(out, n.target);
}

Status ParseInode(std::string_view in, Inode* out) {
  Reader r(in);
  Inode n;
  uint8_t version = 0, type = 0;
  if (!r.Fixed8(&version) || version != kInodeVersion || !r.Fixed8(&type) || type < 1 || type > 3 ||
      !r.Fixed32(&n.mode) || !r.Fixed32(&n.uid) || !r.Fixed32(&n.gid) || !r.Fixed32(&n.nlink) ||
      !r.Fixed64(&n.ino) || !r.Fixed64(&n.parent) || !r.Fixed64(&n.size) || !r.FixedI64(&n.mtime_ns) ||
      !r.FixedI64(&n.ctime_ns) || !r.Fixed64(&n.object) || !r.LengthPrefixed(&n.target) || r.remaining() != 0) {
    return Status::Corruption("inode record is malformed");
  }
  n.type = static_cast<InodeType>(type);
  *out = std::move(n);
  return Status::OK();
}

}  // namespace tpde
