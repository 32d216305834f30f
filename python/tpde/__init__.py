"""tpde: load safetensors files from a tpde mount straight into memory.

    import tpde
    tensors = tpde.load_file("/mnt/ckpt/run1/checkpoint-500/model.safetensors", device="cuda:0")

The compressed chunks come from the tpde daemon through shared memory and
are decoded in this process: on the CPU for device="cpu", on the GPU for a
CUDA device (no full-size host copy). Same keys, dtypes, shapes and values
as safetensors.torch.load_file(path, device=...).

Pure Python over the C ABI of libtpde_client (ctypes), so it works with any
Python 3 and any PyTorch; torch is imported when a tensor is made.
"""
import ctypes
import json
import os
import sys

__all__ = ["load_file", "safe_open", "release_buffers", "TpdeError", "NotCommittedError"]


class TpdeError(OSError):
    """A tpde failure: not a tpde mount, daemon not running, corrupt chunk..."""


class NotCommittedError(TpdeError, TimeoutError):
    """The file is still being written or ingested (after waiting `wait` seconds)."""


_lib = None

# Status codes of the C ABI (tpde::Status::Code).
_NOT_FOUND, _CORRUPTION, _INVALID_ARGUMENT = 1, 2, 3


def _library():
    global _lib
    if _lib is not None:
        return _lib
    candidates = []
    if os.environ.get("TPDE_CLIENT_LIB"):
        candidates.append(os.environ["TPDE_CLIENT_LIB"])
    try:
        from . import _libpath  # written by cmake --install
        candidates.append(_libpath.LIBRARY)
    except ImportError:
        pass
    candidates.append("libtpde_client.so.0")
    errors = []
    for c in candidates:
        try:
            lib = ctypes.CDLL(c)
            break
        except OSError as e:
            errors.append("%s: %s" % (c, e))
    else:
        raise ImportError("libtpde_client not found (set TPDE_CLIENT_LIB): " + "; ".join(errors))
    u64, vp = ctypes.c_uint64, ctypes.c_void_p
    lib.tpde_open.argtypes = [ctypes.c_char_p, ctypes.c_double, ctypes.POINTER(vp)]
    lib.tpde_close.argtypes = [vp]
    lib.tpde_close.restype = None
    lib.tpde_file_bytes.argtypes = [vp]
    lib.tpde_file_bytes.restype = u64
    lib.tpde_chain_depth.argtypes = [vp]
    lib.tpde_read_ranges.argtypes = [vp, ctypes.c_size_t, ctypes.POINTER(u64), ctypes.POINTER(u64),
                                     ctypes.POINTER(vp), ctypes.c_int, vp]
    lib.tpde_read_host.argtypes = [vp, u64, u64, vp]
    lib.tpde_last_error.restype = ctypes.c_char_p
    lib.tpde_release_buffers.argtypes = []
    lib.tpde_release_buffers.restype = None
    _lib = lib
    return lib


def _check(rc, path):
    if rc == 0:
        return
    msg = _library().tpde_last_error().decode(errors="replace")
    if rc == _NOT_FOUND and "not committed" in msg:
        raise NotCommittedError(msg)
    if rc == _NOT_FOUND:
        raise FileNotFoundError(2, msg, path)
    if rc == _INVALID_ARGUMENT and "not in a tpde mount" in msg:
        raise ValueError(msg)
    if "Permission denied" in msg:
        raise PermissionError(13, msg, path)
    raise TpdeError(msg)


# safetensors dtype -> torch attribute name
_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "U16": "uint16", "U32": "uint32", "U64": "uint64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


def _torch_dtype(torch, name, tensor):
    attr = _DTYPES.get(name)
    dtype = getattr(torch, attr, None) if attr else None
    if dtype is None:
        raise TypeError("tensor %r has dtype %s, which torch %s does not have" % (tensor, name, torch.__version__))
    return dtype


def _device_index(torch, device):
    d = torch.device(device)
    if d.type == "cpu":
        return d, -1
    if d.type != "cuda":
        raise ValueError("device %r: tpde loads to 'cpu' or 'cuda[:N]'" % (device,))
    index = d.index if d.index is not None else torch.cuda.current_device()
    return torch.device("cuda", index), index


class _Slice:
    """safetensors' get_slice(): shape and dtype without reading; indexing
    reads only the rows of the first dimension that the index selects (on
    the host), then applies the rest of the index."""

    def __init__(self, owner, name):
        self._owner, self._name = owner, name

    def get_shape(self):
        return list(self._owner._tensors[self._name]["shape"])

    def get_dtype(self):
        return self._owner._tensors[self._name]["dtype"]

    def __getitem__(self, index):
        return self._owner._read_slice(self._name, index)


class safe_open:
    """Like safetensors.safe_open(path, framework="pt", device=...):
    keys(), metadata(), get_tensor(name), get_slice(name). `wait`: seconds
    to wait for a file that is not committed yet."""

    def __init__(self, filename, framework="pt", device="cpu", wait=0.0):
        if framework not in ("pt", "torch"):
            raise ValueError("tpde.safe_open: framework %r is not supported (only 'pt')" % (framework,))
        self._path = os.fspath(filename)
        self._device = device
        lib = _library()
        handle = ctypes.c_void_p()
        _check(lib.tpde_open(self._path.encode(), float(wait), ctypes.byref(handle)), self._path)
        self._handle = handle
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise

    def _live(self):
        if not self._handle:
            raise ValueError("I/O operation on closed file %s" % self._path)
        return self._handle

    def _read_host(self, offset, size):
        buf = ctypes.create_string_buffer(size)
        _check(_library().tpde_read_host(self._live(), offset, size, buf), self._path)
        return buf.raw

    def _read_header(self):
        size = _library().tpde_file_bytes(self._live())
        if size < 8:
            raise ValueError("%s is not a safetensors file (%d bytes)" % (self._path, size))
        n = int.from_bytes(self._read_host(0, 8), "little")
        if n > size - 8 or n > 100 << 20:
            raise ValueError("%s is not a safetensors file (header size %d)" % (self._path, n))
        try:
            header = json.loads(self._read_host(8, n))
        except ValueError as e:
            raise ValueError("%s is not a safetensors file: %s" % (self._path, e))
        self._data_start = 8 + n
        self._metadata = header.pop("__metadata__", None)
        self._tensors = header
        for name, t in header.items():
            b, e = t["data_offsets"]
            if not (0 <= b <= e and self._data_start + e <= size):
                raise ValueError("%s is not a safetensors file: tensor %r out of bounds" % (self._path, name))
        # File order, as safetensors 0.8 lists keys and fills load_file's dict.
        self._order = sorted(header, key=lambda k: header[k]["data_offsets"][0])

    def close(self):
        if getattr(self, "_handle", None):
            _library().tpde_close(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def chain_depth(self):
        """Deltas applied to reconstruct this version (0: the newest)."""
        return _library().tpde_chain_depth(self._live())

    def keys(self):
        return list(self._order)

    def metadata(self):
        return self._metadata

    def get_slice(self, name):
        if name not in self._tensors:
            raise KeyError(name)
        return _Slice(self, name)

    def get_tensor(self, name):
        if name not in self._tensors:
            raise KeyError(name)
        return self._load([name])[name]

    def _read_slice(self, name, index):
        import torch
        t = self._tensors[name]
        dtype = _torch_dtype(torch, t["dtype"], name)
        shape = list(t["shape"])
        if not shape:  # a scalar: the whole (tiny) tensor
            return self.get_tensor(name)[index]
        index = index if isinstance(index, tuple) else (index,)
        first, rest = (index[0], index[1:]) if index else (slice(None), ())
        # The rows of dimension 0 the index touches: a contiguous byte range.
        if isinstance(first, int):
            row = first + shape[0] if first < 0 else first
            if not 0 <= row < shape[0]:
                raise IndexError("index %d is out of bounds for dimension 0 with size %d" % (first, shape[0]))
            lo, hi, local = row, row + 1, 0
        elif isinstance(first, slice) and (first.step or 1) > 0:
            rows = range(*first.indices(shape[0]))
            lo = rows.start if len(rows) else 0
            hi = rows[-1] + 1 if len(rows) else 0
            local = slice(0, hi - lo, rows.step)
        else:  # Ellipsis, None, a tensor or a negative step: as torch indexes the whole tensor
            return self.get_tensor(name)[index]
        row_bytes = torch.empty((), dtype=dtype).element_size()
        for d in shape[1:]:
            row_bytes *= d
        start = self._data_start + t["data_offsets"][0] + lo * row_bytes
        data = self._read_host(start, (hi - lo) * row_bytes) if hi > lo else b""
        rows_tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        rows_tensor = rows_tensor.view(dtype).reshape([hi - lo] + shape[1:])
        out = rows_tensor[(local,) + tuple(rest)]
        device, _ = _device_index(torch, self._device)
        return out.clone() if device.type == "cpu" else out.to(device)

    def _load(self, names, progress=False):
        import torch
        import time
        trace = os.environ.get("TPDE_LOADER_TRACE")
        t0 = time.perf_counter()
        device, index = _device_index(torch, self._device)
        out, offsets, sizes, ptrs = {}, [], [], []
        for name in names:
            t = self._tensors[name]
            tensor = torch.empty(t["shape"], dtype=_torch_dtype(torch, t["dtype"], name), device=device)
            b, e = t["data_offsets"]
            if tensor.numel() * tensor.element_size() != e - b:
                raise ValueError("tensor %r: %d bytes for shape %s" % (name, e - b, t["shape"]))
            out[name] = tensor
            if e > b:
                offsets.append(self._data_start + b)
                sizes.append(e - b)
                ptrs.append(tensor.data_ptr())
        stream = torch.cuda.current_stream(device).cuda_stream if index >= 0 else None
        if trace:
            sys.stderr.write("tpde loader: %d tensors allocated on %s in %.1f ms\n"
                             % (len(out), device, (time.perf_counter() - t0) * 1e3))
        bar = _progress(sum(sizes), os.path.basename(self._path)) if progress else None
        # In groups of about 1 GB, so a progress bar moves; one call for smaller files.
        group, start, done = 1 << 30, 0, 0
        while start < len(sizes):
            end, total = start, 0
            while end < len(sizes) and (end == start or total + sizes[end] <= group):
                total += sizes[end]
                end += 1
            n = end - start
            rc = _library().tpde_read_ranges(
                self._live(), n, (ctypes.c_uint64 * n)(*offsets[start:end]), (ctypes.c_uint64 * n)(*sizes[start:end]),
                (ctypes.c_void_p * n)(*ptrs[start:end]), index, stream)
            if rc == _INVALID_ARGUMENT and "chunk boundary" in _library().tpde_last_error().decode():
                # Stored as opaque bytes (not tensor-aligned chunks): read on the host.
                for k in range(start, end):
                    data = self._read_host(offsets[k], sizes[k])
                    host = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                    target = out[_name_at_offset(self, offsets[k])]
                    target.view(-1).view(torch.uint8).copy_(host.to(target.device))
            else:
                _check(rc, self._path)
            done += total
            if bar:
                bar.update(total)
            start = end
        if bar:
            bar.close()
        return out


def _name_at_offset(f, offset):
    for name, t in f._tensors.items():
        if f._data_start + t["data_offsets"][0] == offset:
            return name
    raise KeyError(offset)


def _progress(total, desc):
    if total < (2 << 30) or not sys.stderr.isatty():
        return None  # short loads and non-interactive use: no bar
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc)


def release_buffers():
    """Frees the shared memory kept for the next load (about the compressed
    size of the largest file loaded so far; a later load allocates again)."""
    _library().tpde_release_buffers()


def load_file(filename, device="cpu", wait=0.0, progress=True):
    """Like safetensors.torch.load_file(filename, device=...): a dict of
    tensor name -> torch.Tensor on `device` ("cpu", "cuda", "cuda:N").
    `wait`: seconds to wait for a file that is not committed yet.
    `progress`: a tqdm bar for loads of 2 GB or more on a terminal."""
    with safe_open(filename, device=device, wait=wait) as f:
        return f._load(f.keys(), progress=progress)
