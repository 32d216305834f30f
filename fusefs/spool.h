// Spool: local files holding the content of files being written, until the
// ingest workers commit them to the store.
//
// For inode N the spool keeps `N.data` (the file's bytes) and, once the file
// has been closed or fsynced, an empty marker `N.keep`. On start, a `.data`
// with its marker is ingested (nothing closed or fsynced is lost); a `.data`
// without one was open for writing, never synced, when the daemon died: it is
// discarded, so no half-written file is ever presented as complete.
// Thread-safety: the methods touch distinct files per inode; callers
// serialise operations on one inode.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codec/status.h"

namespace tpde {

class Spool {
 public:
  // Creates `dir` if needed.
  static Status Open(const std::string& dir, Spool* out);

  std::string DataPath(uint64_t ino) const;

  // Opens (creating if needed) the data file read-write; O_TRUNC if `truncate`.
  Status OpenData(uint64_t ino, bool truncate, int* fd) const;
  // Makes the data file durable and records that it must survive a crash.
  Status MarkKeep(uint64_t ino, int fd, bool sync) const;
  // Removes the data file and the marker.
  Status Remove(uint64_t ino) const;

  struct Entry {
    uint64_t ino;
    bool keep;
  };
  Status List(std::vector<Entry>* out) const;

  // Bytes free on the spool's file system.
  Status FreeBytes(uint64_t* free, uint64_t* total) const;

 private:
  std::string dir_;
};

}  // namespace tpde
