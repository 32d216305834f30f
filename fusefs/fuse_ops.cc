#include "fusefs/fuse_ops.h"

#include <fcntl.h>
#include <sys/xattr.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "fusefs/filesystem.h"

namespace tpde {

namespace {

Filesystem* Fs(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }

void ReplyEntry(fuse_req_t req, const struct stat& st) {
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.generation = Fs(req)->Generation(st.st_ino);
  e.attr = st;
  e.attr_timeout = kAttrTimeoutSeconds;
  e.entry_timeout = kAttrTimeoutSeconds;
  fuse_reply_entry(req, &e);
}

void ReplyAttrOrErr(fuse_req_t req, int err, const struct stat& st) {
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, kAttrTimeoutSeconds);
  }
}

void ReplyEntryOrErr(fuse_req_t req, int err, const struct stat& st) {
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    ReplyEntry(req, st);
  }
}

int64_t ToNs(const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t Fh(const fuse_file_info* fi) { return fi != nullptr ? fi->fh : 0; }

// ---- Operations -----------------------------------------------------------

void Init(void*, fuse_conn_info* conn) {
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // The kernel buffers writes and sends them in large writebacks; close()
  // still writes every dirty page back before release, and fsync() before
  // it returns, so the spool holds the whole file when ingest is queued.
  if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  // (splice read measured slower here)
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  conn->max_background = 128;  // writeback and read-ahead requests in flight
  conn->congestion_threshold = 96;
  conn->max_read = kMaxRequestBytes;  // must equal the max_read mount option
  conn->max_write = kMaxRequestBytes;
  conn->max_readahead = kReadaheadBytes;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  struct stat st {};
  ReplyEntryOrErr(req, Fs(req)->Lookup(parent, name, &st), st);
}

void Forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }  // inodes live in the store

void ForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  struct stat st {};
  ReplyAttrOrErr(req, Fs(req)->GetAttr(ino, Fh(fi), &st), st);
}

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  SetAttrRequest r;
  if (to_set & FUSE_SET_ATTR_MODE) r.mode = attr->st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) r.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) r.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) r.size = static_cast<uint64_t>(attr->st_size);
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    r.mtime_ns = NowNs();
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    r.mtime_ns = ToNs(attr->st_mtim);
  }
  struct stat st {};
  ReplyAttrOrErr(req, Fs(req)->SetAttr(ino, Fh(fi), r, &st), st);
}

void Readlink(fuse_req_t req, fuse_ino_t ino) {
  std::string target;
  if (int err = Fs(req)->Readlink(ino, &target); err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_readlink(req, target.c_str());
  }
}

void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  struct stat st {};
  ReplyEntryOrErr(req, Fs(req)->Mkdir(parent, name, mode & ~ctx->umask, ctx->uid, ctx->gid, &st), st);
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Fs(req)->Unlink(parent, name));
}

void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { fuse_reply_err(req, Fs(req)->Rmdir(parent, name)); }

void Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  struct stat st {};
  ReplyEntryOrErr(req, Fs(req)->Symlink(link, parent, name, ctx->uid, ctx->gid, &st), st);
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
            unsigned int flags) {
  unsigned f = 0;
  if (flags & RENAME_NOREPLACE) f |= Store::kRenameNoReplace;
  if (flags & RENAME_EXCHANGE) f |= Store::kRenameExchange;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);  // RENAME_WHITEOUT: not for this file system
    return;
  }
  fuse_reply_err(req, Fs(req)->Rename(parent, name, newparent, newname, f));
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  struct stat st {};
  uint64_t fh = 0;
  int err = Fs(req)->Create(parent, name, mode & ~ctx->umask, fi->flags, ctx->uid, ctx->gid, &st, &fh);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = fh;
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.generation = Fs(req)->Generation(st.st_ino);
  e.attr = st;
  e.attr_timeout = kAttrTimeoutSeconds;
  e.entry_timeout = kAttrTimeoutSeconds;
  if (fuse_reply_create(req, &e, fi) != 0) Fs(req)->Release(fh);  // interrupted
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  uint64_t fh = 0;
  bool keep_cache = false;
  if (int err = Fs(req)->Open(ino, fi->flags, &fh, &keep_cache); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = fh;
  fi->keep_cache = keep_cache;
  if (fuse_reply_open(req, fi) != 0) Fs(req)->Release(fh);
}

void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  size_t n = 0;
  if (int err = Fs(req)->Read(fi->fh, static_cast<uint64_t>(off), size, buf.data(), &n); err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, buf.data(), n);
  }
}

// Moves the request's data from /dev/fuse into the spool file with splice
// where the kernel allows it (no copy through user space).
void WriteBuf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  SpoolFile file;
  if (int err = Fs(req)->BeginWrite(fi->fh, &file); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = file->get();
  out.buf[0].pos = off;
  const size_t want = fuse_buf_size(in);
  ssize_t n;
  {
    std::lock_guard<std::mutex> lock(file->write_mu());
    n = fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_MOVE);
  }
  // A short copy into a local file means its disk is full: an error, not a
  // short write (the kernel's writeback would take a short reply as success
  // of the pages it sent, and the version would be sealed without them).
  const int err = n < 0 ? static_cast<int>(-n) : static_cast<size_t>(n) < want ? ENOSPC : 0;
  Fs(req)->EndWrite(fi->fh, err);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { fuse_reply_err(req, Fs(req)->Flush(fi->fh)); }

void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { fuse_reply_err(req, Fs(req)->Release(fi->fh)); }

void Fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) { fuse_reply_err(req, Fs(req)->Fsync(fi->fh)); }

// A directory handle is a listing taken at opendir; offsets index into it.
void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* entries = new std::vector<DirListEntry>();
  if (int err = Fs(req)->ReadDir(ino, entries); err != 0) {
    delete entries;
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(entries);
  if (fuse_reply_open(req, fi) != 0) delete entries;
}

void ReplyDir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  const auto& entries = *reinterpret_cast<std::vector<DirListEntry>*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
    const DirListEntry& e = entries[i];
    size_t n;
    if (plus) {
      fuse_entry_param p{};
      p.ino = e.st.st_ino;
      p.generation = Fs(req)->Generation(e.st.st_ino);
      p.attr = e.st;
      p.attr_timeout = kAttrTimeoutSeconds;
      p.entry_timeout = kAttrTimeoutSeconds;
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, e.name.c_str(), &p, static_cast<off_t>(i + 1));
    } else {
      n = fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(), &e.st, static_cast<off_t>(i + 1));
    }
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ReadDir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  ReplyDir(req, size, off, fi, false);
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  ReplyDir(req, size, off, fi, true);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<std::vector<DirListEntry>*>(fi->fh);
  fuse_reply_err(req, 0);
}

void FsyncDir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, Fs(req)->FsyncDir()); }

void StatFs(fuse_req_t req, fuse_ino_t) {
  struct statvfs sv {};
  if (int err = Fs(req)->StatFs(&sv); err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_statfs(req, &sv);
  }
}

void ReplyXattrValue(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  std::string value;
  if (int err = Fs(req)->GetXattr(ino, name, &value); err != 0) {
    fuse_reply_err(req, err);
  } else {
    ReplyXattrValue(req, value, size);
  }
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::vector<std::string> names;
  if (int err = Fs(req)->ListXattr(ino, &names); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  std::string list;
  for (const auto& n : names) list.append(n).push_back('\0');
  ReplyXattrValue(req, list, size);
}

void SetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { fuse_reply_err(req, ENOTSUP); }

void RemoveXattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, ENOTSUP); }

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = GetAttr;
  ops.setattr = SetAttr;
  ops.readlink = Readlink;
  ops.mkdir = Mkdir;
  ops.unlink = Unlink;
  ops.rmdir = Rmdir;
  ops.symlink = Symlink;
  ops.rename = Rename;
  ops.create = Create;
  ops.open = Open;
  ops.read = Read;
  ops.write_buf = WriteBuf;
  ops.flush = Flush;
  ops.release = Release;
  ops.fsync = Fsync;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.readdirplus = ReadDirPlus;
  ops.releasedir = ReleaseDir;
  ops.fsyncdir = FsyncDir;
  ops.statfs = StatFs;
  ops.setxattr = SetXattr;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.removexattr = RemoveXattr;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops* FuseOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return &ops;
}

}  // namespace tpde
