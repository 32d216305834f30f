// Copying directory trees between the local file system and a store.
//
// Import walks a local tree in natural order (checkpoint-200 before
// checkpoint-1000: training order, which reference choice follows) and
// ingests regular files, creates directories and symlinks, keeping modes,
// owners and file mtimes. After each file with a predecessor it runs the
// collector, so the previous version is a delta before the next is read. Export writes a stored tree out, each file to a
// temporary name, fsynced, then renamed, with its mode and mtime. Both stop at the first error and return it.
#pragma once

#include <functional>
#include <string>

#include "codec/status.h"
#include "store/store.h"

namespace tpde {

// Called after each file: its local path and what the ingest produced.
using ImportObserver = std::function<void(const std::string& path, const IngestResult& result)>;
// Called for entries that are skipped (sockets, devices, ...).
using SkipObserver = std::function<void(const std::string& path)>;

Status ImportTree(Store* store, const std::string& src_dir, uint64_t dest_dir, const ImportObserver& on_file,
                  const SkipObserver& on_skip = nullptr);

// Called after each exported file with its destination and size.
using ExportObserver = std::function<void(const std::string& path, uint64_t bytes)>;

// Writes `node` (a file, symlink or directory) to `dest_path`.
Status ExportTree(Store* store, const Inode& node, const std::string& dest_path, const ExportObserver& on_file);

// Natural order of names: digit runs compare as numbers (strverscmp(3)).
bool NaturalLess(const std::string& a, const std::string& b);

}  // namespace tpde
