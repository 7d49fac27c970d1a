#!/usr/bin/env python3
"""A second reader of ckpt image format v1, written from spec/v1.md alone.

It exists to show that the spec is enough to read an image: it walks an image
front to back (spec §8.3, one pass), checks every rule of Appendix A that it
can check with the Python standard library, decodes every record, and prints
a JSON summary. The one check it cannot make is decompressing zstd chunks
(the standard library has no zstd): for those it checks the chunk header, the
payload CRC and the zstd frame structure (RFC 8878 §3.1.1: frame header and
block headers, the frame ends exactly at the end of the chunk).

Usage: reader.py IMAGE|-
Exit status: 0 and the summary on stdout when the image is valid; 1 and one
line "invalid: ..." on stderr at the first violation; 3 when the image needs
another reader (unsupported); 2 when the file cannot be read.

Section numbers (§) refer to spec/v1.md.
"""

import json
import struct
import sys
import zlib

# §2, §7
MAGIC = b"\x89CKPT\r\n\x1a"
TRAILER_MAGIC = b"CKPTTRLR"
READER_MAJOR, READER_MINOR = 1, 3

# §3.3
KINDS = {
    0x0001: "HEADER",
    0x0002: "PROCESS",
    0x0003: "THREAD",
    0x0004: "REGION",
    0x0005: "PAGES",
    0x0006: "FD",
    0x0007: "SIGNALS",
    0x0008: "TIMERS",
    0x0009: "RLIMITS",
    0x000A: "PID_TABLE",
    0x000B: "SOCKET_PEER",
    0x000C: "ZOMBIES",
    0x000D: "SHARED_MEMORY",
    0x000E: "SYSV_IPC",
    0x00FF: "INDEX",
}
ONCE = {"HEADER", "PROCESS", "SIGNALS", "TIMERS", "RLIMITS", "PID_TABLE", "ZOMBIES",
        "SHARED_MEMORY", "SYSV_IPC"}
CRITICAL, SAFE_TO_COPY = 0x0001, 0x0002

# §8.1
MAX_STRING = 1 << 20
MAX_PATH = 1 << 20
MAX_XSAVE = 64 << 10
MAX_METADATA_PAYLOAD = 256 << 20
MAX_CHUNK_PAGES = 65536
MAX_CHUNK_BYTES = 256 << 20


def max_zstd_len(n):
    return n + n // 128 + 4096


MAX_PAGES_PAYLOAD = 32 + 65536 + MAX_CHUNK_BYTES + MAX_CHUNK_BYTES // 128 + 4096
assert MAX_PAGES_PAYLOAD == 270602272  # the value §8.1 states

# §4.4, §4.5
SHM_OBJECTS = ["anonymous", "posix_shm", "memfd", "sysv"]
REGION_KINDS = ["anon", "heap", "stack", "file", "shm", "vdso", "vvar", "vvar_vclock", "vsyscall"]
STORAGE = ["embedded", "by_reference"]
FD_KINDS = [
    "unsupported", "regular_file", "directory", "pipe", "fifo", "tty", "pty_master",
    "socket", "eventfd", "epoll", "signalfd", "timerfd", "inotify", "device",
]
# §4.3 gp regs, in order
REGS = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
    "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
    "gs_base", "ds", "es", "fs", "gs",
]
RESUME = ["rip", "rsp", "rbx", "rbp", "r12", "r13", "r14", "r15"]


class Invalid(Exception):
    """The image breaks a rule of the spec (malformed or corrupt)."""

    def __init__(self, offset, kind, what):
        super().__init__(f"at {offset:#x}{' (' + kind + ')' if kind else ''}: {what}")


class Unsupported(Invalid):
    """The image may be fine, but needs another reader (§8)."""


def crc32(b):
    # §1.2: CRC-32 as zlib computes it.
    return zlib.crc32(b) & 0xFFFFFFFF


class Payload:
    """Reads the fields of one metadata payload (§1.3), every length and
    count checked against the bytes that remain (§8.2)."""

    def __init__(self, buf, base, kind):
        self.buf, self.pos, self.base, self.kind = buf, 0, base, kind

    def bad(self, what):
        return Invalid(self.base + self.pos, self.kind, what)

    def remaining(self):
        return len(self.buf) - self.pos

    def take(self, n):
        if n > self.remaining():
            raise self.bad(f"truncated: {n} bytes needed, {self.remaining()} left")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def fmt(self, f):
        return struct.unpack("<" + f, self.take(struct.calcsize("<" + f)))[0]

    def u8(self):
        return self.fmt("B")

    def u16(self):
        return self.fmt("H")

    def u32(self):
        return self.fmt("I")

    def u64(self):
        return self.fmt("Q")

    def i32(self):
        return self.fmt("i")

    def i64(self):
        return self.fmt("q")

    def bool(self):
        v = self.u8()
        if v > 1:
            raise Invalid(self.base + self.pos - 1, self.kind, f"bool byte {v}")
        return v == 1

    def bytes(self, limit=None):
        n = self.u32()
        if limit is not None and n > limit:
            raise Invalid(self.base + self.pos - 4, self.kind, f"length {n} over the limit {limit}")
        return self.take(n)

    def path(self):
        return self.bytes(MAX_PATH)

    def str(self):
        at = self.pos
        b = self.bytes(MAX_STRING)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(self.base + at, self.kind, "str is not UTF-8")

    def list(self, item):
        n = self.u32()
        if n > self.remaining():
            raise Invalid(self.base + self.pos - 4, self.kind, f"count {n} over the {self.remaining()} bytes left")
        return [item() for _ in range(n)]

    def option(self, item):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return item()
        raise Invalid(self.base + self.pos - 1, self.kind, f"option tag {tag}")

    def tag(self, names, width="B"):
        v = self.fmt(width)
        if v >= len(names):
            raise Invalid(self.base + self.pos - struct.calcsize(width), self.kind, f"unknown tag {v}")
        return names[v]

    def finish(self, minor):
        # §9.2: bytes after the known fields are refused unless the image's
        # minor version is newer than this reader's.
        if self.remaining() and minor <= READER_MINOR:
            raise self.bad(f"{self.remaining()} bytes after the last field")


def text(b):
    """A byte string (path, argv entry) for JSON."""
    return b.decode("utf-8", "replace")


# --- §4.0 shared structures -------------------------------------------------

def siginfo(p):
    return {"signo": p.i32(), "code": p.i32(), "errno": p.i32(), "pid": p.i32(),
            "uid": p.u32(), "value": p.u64()}


def file_identity(p):
    return {"path": text(p.path()), "dev": p.u64(), "inode": p.u64(), "size": p.u64(),
            "mtime_ns": p.i64()}


def timer_value(p):
    return [p.u64(), p.u64()]  # interval_ns, value_ns


# --- §4.1 .. §4.10 metadata records -----------------------------------------

def header(p):
    h = {"writer_version": p.str(), "arch": p.u16(), "page_size": p.u32(),
         "created_ns": p.u64(), "computation_id": p.take(16).hex(), "generation": p.u64(),
         "vpid": p.i32(), "real_pid": p.i32(), "program": p.str(), "unique_id": p.str(),
         "hostname": p.str(), "kernel_release": p.str(), "libc_version": p.str()}
    h["vdso_symbols"] = p.list(lambda: [p.str(), p.u64()])
    h["xsave_features"] = p.u64()
    h["xsave_size"] = p.u32()
    h["cpu_flags"] = p.list(p.str)
    h["rseq_size"] = p.u32()
    return h


def process(p):
    r = {"pid": p.i32(), "ppid": p.i32(), "pgid": p.i32(), "sid": p.i32(),
         "uid": [p.u32() for _ in range(3)], "gid": [p.u32() for _ in range(3)]}
    r["groups"] = p.list(p.u32)
    r["cwd"] = text(p.path())
    r["umask"] = p.u32()
    r["exe"] = text(p.path())
    r["cmdline"] = [text(a) for a in p.list(p.path)]
    r["environ"] = [text(a) for a in p.list(p.path)]
    r["auxv"] = p.list(lambda: [p.u64(), p.u64()])
    r["personality"] = p.u32()
    mm = ["start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
          "start_stack", "arg_start", "arg_end", "env_start", "env_end"]
    r["mm"] = {f: p.u64() for f in mm}
    r["sched_policy"] = p.u32()
    r["nice"] = p.i32()
    r["restart_info_addr"] = p.u64()
    return r


def thread(p):
    t = {"tid": p.i32(), "flags": p.u32(), "name": p.str()}
    t["regs"] = {r: p.u64() for r in REGS}
    t["xsave_len"] = len(p.bytes(MAX_XSAVE))
    t["sigmask"] = p.u64()
    t["sigaltstack"] = {"sp": p.u64(), "flags": p.i32(), "size": p.u64()}
    t["rseq"] = p.option(lambda: {"addr": p.u64(), "len": p.u32(), "sig": p.u32()})
    t["robust_list"] = p.u64()
    t["robust_list_len"] = p.u64()
    t["clear_child_tid"] = p.u64()
    t["pending"] = p.list(lambda: siginfo(p))
    t["resume"] = {r: p.u64() for r in RESUME}
    return t


def region(p):
    r = {"start": p.u64(), "end": p.u64(), "prot": p.u32(), "shared": p.bool(),
         "grows_down": p.bool(), "kind": p.tag(REGION_KINDS), "name": text(p.path())}

    def backing():
        b = file_identity(p)
        b["offset"] = p.u64()
        b["storage"] = p.tag(STORAGE)
        return b

    r["backing"] = p.option(backing)
    return r


def fd(p):
    f = {"fd": p.i32(), "fd_flags": p.u32(), "ofd_id": p.u64(), "status_flags": p.u32()}
    kind = f["kind"] = p.tag(FD_KINDS, "H")
    if kind == "regular_file":
        f.update(file=file_identity(p), offset=p.u64(), deleted=p.bool())
        contents = p.option(p.bytes)
        f["contents_len"] = None if contents is None else len(contents)
    elif kind == "directory":
        f.update(path=text(p.path()), offset=p.u64())
    elif kind == "pipe":
        f.update(pipe_id=p.u64(), write_end=p.bool(), buffered_len=len(p.bytes()))
    elif kind == "fifo":
        f.update(path=text(p.path()), buffered_len=len(p.bytes()))
    elif kind == "tty":
        f.update(path=text(p.path()), termios_len=len(p.bytes()), rows=p.u16(), cols=p.u16(),
                 controlling=p.bool())
    elif kind == "pty_master":
        f.update(index=p.u32(), termios_len=len(p.bytes()), rows=p.u16(), cols=p.u16())
    elif kind == "socket":
        f.update(family=p.i32(), sock_type=p.i32(), protocol=p.i32(), state=p.u32(),
                 local=p.bytes().hex(), peer=p.bytes().hex())
        f["options"] = p.list(lambda: [p.i32(), p.i32(), p.bytes().hex()])
        f.update(inbound_len=len(p.bytes()), socket_id=p.u64())
    elif kind == "eventfd":
        f.update(count=p.u64(), semaphore=p.bool())
    elif kind == "epoll":
        f["entries"] = p.list(lambda: [p.i32(), p.u32(), p.u64()])
    elif kind == "signalfd":
        f["mask"] = p.u64()
    elif kind == "timerfd":
        f.update(clock=p.i32(), interval_ns=p.u64(), value_ns=p.u64())
        # 1.1: settime_flags and ticks end the payload when present.
        if p.minor >= 1 and p.remaining():
            f.update(settime_flags=p.u32(), ticks=p.u64())
        else:
            f.update(settime_flags=0, ticks=0)
    elif kind == "inotify":
        f["watches"] = p.list(lambda: [text(p.path()), p.u32()])
    elif kind == "device":
        f.update(path=text(p.path()), rdev=p.u64())
    return f


def signals(p):
    actions = p.list(lambda: [p.u64(), p.u64(), p.u64(), p.u64()])
    pending = p.list(lambda: siginfo(p))
    return {"actions": len(actions),
            "handled": [i + 1 for i, a in enumerate(actions) if a[0] not in (0, 1)],
            "ignored": [i + 1 for i, a in enumerate(actions) if a[0] == 1],
            "pending": pending}


def timers(p):
    t = {"real": timer_value(p), "virt": timer_value(p), "prof": timer_value(p)}
    t["posix"] = p.list(lambda: {"id": p.i32(), "clock": p.i32(), "notify": p.i32(),
                                 "signo": p.i32(), "value": p.u64(), "notify_tid": p.i32(),
                                 "timer": timer_value(p), "overrun": p.i32()})
    return t


def rlimits(p):
    return p.list(lambda: [p.u32(), p.u64(), p.u64()])


def pid_table(p):
    return p.list(lambda: {"vpid": p.i32(), "real_pid": p.i32(), "ppid": p.i32(),
                           "pgid": p.i32(), "sid": p.i32(), "threads": p.list(p.i32)})


def socket_peer(p):
    return {"socket_id": p.u64(), "peer_unique_id": p.str(), "peer_host": p.str(),
            "peer_socket_id": p.u64()}


def zombies(p):
    # §4.11, since 1.2
    if p.minor < 2:
        raise Invalid(p.base, "ZOMBIES", f"ZOMBIES in a 1.{p.minor} image (it needs 1.2)")
    return p.list(lambda: {"pid": p.i32(), "status": p.i32()})


def shared_memory(p):
    # §4.12, since 1.3
    if p.minor < 3:
        raise Invalid(p.base, "SHARED_MEMORY",
                      f"SHARED_MEMORY in a 1.{p.minor} image (it needs 1.3)")
    return p.list(lambda: {"start": p.u64(), "object": p.tag(SHM_OBJECTS), "dev": p.u64(),
                           "inode": p.u64(), "size": p.u64(), "offset": p.u64()})


def sysv_ipc(p):
    # §4.13, since 1.3
    if p.minor < 3:
        raise Invalid(p.base, "SYSV_IPC", f"SYSV_IPC in a 1.{p.minor} image (it needs 1.3)")

    def perm():
        return {"key": p.i32(), "id": p.i32(), "mode": p.u32(), "uid": p.u32(), "gid": p.u32(),
                "cuid": p.u32(), "cgid": p.u32()}
    return {
        "shm": p.list(lambda: {"perm": perm(), "size": p.u64()}),
        "sem": p.list(lambda: {"perm": perm(), "values": p.list(p.u16)}),
        "msg": p.list(lambda: {"perm": perm(), "qbytes": p.u64(),
                               "messages": p.list(lambda: {"mtype": p.i64(),
                                                           "text": p.bytes().hex()})}),
    }


DECODERS = {
    "HEADER": header, "PROCESS": process, "THREAD": thread, "REGION": region, "FD": fd,
    "SIGNALS": signals, "TIMERS": timers, "RLIMITS": rlimits, "PID_TABLE": pid_table,
    "SOCKET_PEER": socket_peer, "ZOMBIES": zombies, "SHARED_MEMORY": shared_memory,
    "SYSV_IPC": sysv_ipc,
}


# --- §5 PAGES ----------------------------------------------------------------

def zstd_frame(data, base, raw_len):
    """Checks that `data` is exactly one zstd frame (RFC 8878 §3.1.1) whose
    declared content size, if any, is raw_len. Returns the declared size."""
    def bad(off, what):
        return Invalid(base + off, "PAGES", "zstd frame: " + what)

    if len(data) < 6 or data[:4] != b"\x28\xb5\x2f\xfd":
        raise bad(0, "no zstd magic")
    fhd = data[4]
    fcs_flag, single, reserved, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 3) & 1, (fhd >> 2) & 1, fhd & 3
    if reserved:
        raise bad(4, "reserved bit set in the frame header descriptor")
    pos = 5 + (0 if single else 1) + [0, 1, 2, 4][dict_flag]
    fcs_size = [1 if single else 0, 2, 4, 8][fcs_flag]
    if pos + fcs_size > len(data):
        raise bad(pos, "frame header cut short")
    declared = None
    if fcs_size:
        declared = int.from_bytes(data[pos:pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
        if declared != raw_len:
            raise bad(pos, f"declares {declared} bytes, the chunk holds {raw_len}")
    pos += fcs_size
    known_out = 0  # bytes that raw and RLE blocks yield
    while True:
        if pos + 3 > len(data):
            raise bad(pos, "block header cut short")
        bh = int.from_bytes(data[pos:pos + 3], "little")
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        pos += 3
        if btype == 3:
            raise bad(pos - 3, "reserved block type")
        if bsize > 128 << 10:
            raise bad(pos - 3, "block larger than 128 KiB")
        if btype == 1:  # RLE: one byte repeated bsize times
            pos += 1
            known_out += bsize
        else:
            pos += bsize
            known_out += bsize if btype == 0 else 0
        if pos > len(data):
            raise bad(pos, "block runs past the end of the chunk")
        if last:
            break
    if known_out > raw_len:
        raise bad(pos, f"raw and RLE blocks alone yield {known_out} bytes, more than {raw_len}")
    pos += 4 if checksum else 0
    if pos != len(data):
        raise bad(min(pos, len(data)), f"the frame is {pos} bytes, the chunk stores {len(data)}")
    return declared


def chunk(payload, offset, page_size, regions):
    """Checks a PAGES payload (§5); returns its summary."""
    base = offset + 24

    def bad(at, what):
        return Invalid(base + at, "PAGES", what)

    if len(payload) < 32:
        raise bad(0, "payload shorter than the chunk header")
    region_i, pages, addr, encoding, reserved, pad, stored_len = struct.unpack("<IIQB3sIQ", payload[:32])
    if region_i >= len(regions):
        raise bad(0, f"region {region_i}, but {len(regions)} REGIONs precede the chunk")
    r = regions[region_i]
    if pages < 1 or pages > min(MAX_CHUNK_PAGES, MAX_CHUNK_BYTES // page_size):
        raise bad(4, f"{pages} pages")
    raw_len = pages * page_size
    if addr % page_size or addr < r["start"] or addr + raw_len > r["end"]:
        raise bad(8, f"pages {addr:#x}+{pages} not page-aligned inside region {region_i}")
    if encoding not in (0, 1):
        raise Unsupported(base + 16, "PAGES", f"encoding {encoding}")
    if reserved != b"\0\0\0":
        raise bad(17, "reserved bytes not zero")
    if pad >= page_size or 32 + pad + stored_len != len(payload):
        raise bad(20, "32 + pad + stored_len != payload_len")
    data_offset = base + 32 + pad
    if encoding == 0:
        if stored_len != raw_len:
            raise bad(24, "raw stored_len is not pages × page_size")
        if data_offset % page_size:
            raise bad(20, f"raw data at {data_offset:#x}, not page-aligned")
    else:
        if pad:
            raise bad(20, "zstd chunk with a pad")
        if stored_len > max_zstd_len(raw_len) or stored_len < 4 * -(-raw_len // 131072):
            raise bad(24, f"zstd stored_len {stored_len} out of bounds for {raw_len} bytes")
    if payload[32:32 + pad].strip(b"\0"):
        raise bad(32, "pad bytes not zero")
    if encoding == 1:
        zstd_frame(payload[32:], data_offset, raw_len)
    return {"region": region_i, "addr": addr, "pages": pages,
            "encoding": ["raw", "zstd"][encoding], "pad": pad, "stored_len": stored_len,
            "data_offset": data_offset}


# --- the walk (§8.3, one pass) -----------------------------------------------

def read_image(img):
    # §2 preamble
    if len(img) < 16:
        if MAGIC.startswith(img[:8]):
            raise Invalid(0, None, "truncated in the preamble")
        raise Invalid(0, None, "not a ckpt image (magic)")
    magic, major, minor, pcrc = struct.unpack("<8sHHI", img[:16])
    if magic != MAGIC:
        raise Invalid(0, None, "not a ckpt image (magic)")
    if crc32(img[:12]) != pcrc:
        raise Invalid(12, None, "preamble CRC")
    if major != READER_MAJOR:
        raise Unsupported(8, None, f"format version {major}.{minor}")

    out = {"version": f"{major}.{minor}", "file_len": len(img), "records": [], "counts": {},
           "header": None, "process": None, "threads": [], "regions": [], "chunks": [],
           "fds": [], "signals": None, "timers": None, "rlimits": None, "pid_table": None,
           "socket_peers": [], "zombies": None, "shared_memory": None, "sysv_ipc": None,
           "skipped": []}
    seen = []  # (offset, kind code, flags) of every record before the INDEX
    page_size = None
    off = 16
    while True:
        # §3.1 record header, checked in the order the spec gives
        if off + 24 > len(img):
            raise Invalid(off, None, "truncated: no record header (the image has no INDEX)")
        kind, flags, reserved, plen, pcrc, hcrc = struct.unpack("<HHIQII", img[off:off + 24])
        if crc32(img[off:off + 20]) != hcrc:
            raise Invalid(off, None, "record header CRC")
        name = KINDS.get(kind)
        limit = MAX_PAGES_PAYLOAD if name == "PAGES" else MAX_METADATA_PAYLOAD
        if plen > limit:
            raise Invalid(off, name, f"payload_len {plen} over the limit {limit}")
        if flags & 0xFFFC or reserved:
            raise Invalid(off, name, "reserved flag bits or reserved field set")
        if name is None and flags & CRITICAL:
            raise Unsupported(off, None, f"unknown critical record kind {kind:#06x}")
        start, end = off + 24, off + 24 + plen
        if end > len(img):
            raise Invalid(off, name, f"truncated: payload runs to {end:#x}, the file ends at {len(img):#x}")
        payload = img[start:end]
        if crc32(payload) != pcrc:
            raise Invalid(off, name, "payload CRC")
        out["records"].append({"offset": off, "kind": name or f"{kind:#06x}", "flags": flags,
                               "payload_len": plen})
        out["counts"][name or "unknown"] = out["counts"].get(name or "unknown", 0) + 1
        if name == "INDEX":
            index_offset = off
            off = end
            break
        # §3.4 order and cardinality
        if not seen and name != "HEADER":
            raise Invalid(off, name, "the first record is not HEADER")
        if name in ONCE and out["counts"][name] > 1:
            raise Invalid(off, name, "second record of a once-only kind")
        seen.append((off, kind, flags))
        if name is None:
            out["skipped"].append([off, kind, flags])
        elif name == "PAGES":
            out["chunks"].append(chunk(payload, off, page_size, out["regions"]))
        else:
            p = Payload(payload, start, name)
            p.minor = minor
            value = DECODERS[name](p)
            p.finish(minor)
            if name == "HEADER":
                page_size = value["page_size"]
                if page_size < 4096 or page_size > 65536 or page_size & (page_size - 1):
                    raise Invalid(start, name, f"page size {page_size}")
                out["header"] = value
            elif name == "REGION":
                if value["start"] >= value["end"] or value["start"] % page_size or value["end"] % page_size:
                    raise Invalid(start, name, "region empty or not page-aligned")
                out["regions"].append(value)
            elif name in ("THREAD", "FD", "SOCKET_PEER"):
                out[{"THREAD": "threads", "FD": "fds", "SOCKET_PEER": "socket_peers"}[name]].append(value)
            else:
                out[name.lower()] = value
        off = end

    # §6 INDEX
    ipayload = img[index_offset + 24:off]
    count = struct.unpack("<Q", ipayload[:8])[0] if len(ipayload) >= 8 else None
    if count != len(seen) or len(ipayload) != 8 + 16 * len(seen):
        raise Invalid(index_offset, "INDEX", f"count {count} / length {len(ipayload)} for {len(seen)} records")
    for i, (roff, rkind, rflags) in enumerate(seen):
        e = struct.unpack("<QHHI", ipayload[8 + 16 * i:24 + 16 * i])
        if e != (roff, rkind, rflags, 0):
            raise Invalid(index_offset + 32 + 16 * i, "INDEX", f"entry {i} does not match the record at {roff:#x}")

    # §7 trailer
    if off + 32 > len(img):
        raise Invalid(off, None, "truncated: no trailer")
    tmagic, t_index, t_count, image_crc, tcrc = struct.unpack("<8sQQII", img[off:off + 32])
    if tmagic != TRAILER_MAGIC:
        raise Invalid(off, None, "trailer magic")
    if crc32(img[off:off + 28]) != tcrc:
        raise Invalid(off + 28, None, "trailer CRC")
    if t_index != index_offset or t_count != len(seen):
        raise Invalid(off + 8, None, "trailer disagrees with the INDEX")
    if crc32(img[:off]) != image_crc:
        raise Invalid(off + 24, None, "image CRC")
    if off + 32 != len(img):
        raise Invalid(off + 32, None, f"{len(img) - off - 32} bytes after the trailer")
    out["image_crc"] = image_crc

    # §3.4 and Appendix A.10: the image as a whole
    for name, what in (("header", "HEADER"), ("process", "PROCESS")):
        if out[name] is None:
            raise Invalid(index_offset, None, f"no {what} record")
    if not out["threads"]:
        raise Invalid(index_offset, None, "no THREAD record")
    spans = sorted((r["start"], r["end"]) for r in out["regions"])
    for a, b in zip(spans, spans[1:]):
        if b[0] < a[1]:
            raise Invalid(index_offset, None, f"regions at {a[0]:#x} and {b[0]:#x} overlap")
    # §4.12: each shared mapping names a shared REGION by its start, once
    named = set()
    for m in out["shared_memory"] or []:
        r = next((r for r in out["regions"] if r["start"] == m["start"]), None)
        if r is None or not r["shared"] or m["start"] in named:
            raise Invalid(index_offset, None,
                          f"SHARED_MEMORY mapping at {m['start']:#x} names no shared region of its own")
        named.add(m["start"])
    spans = sorted((c["addr"], c["addr"] + c["pages"] * page_size) for c in out["chunks"])
    for a, b in zip(spans, spans[1:]):
        if b[0] < a[1]:
            raise Invalid(index_offset, None, f"chunks at {a[0]:#x} and {b[0]:#x} overlap")

    # Pages and bytes stored per region.
    for r in out["regions"]:
        r["pages_stored"] = 0
        r["bytes_stored"] = 0
    for c in out["chunks"]:
        r = out["regions"][c["region"]]
        r["pages_stored"] += c["pages"]
        r["bytes_stored"] += c["stored_len"]
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: reader.py IMAGE|-", file=sys.stderr)
        return 2
    try:
        if argv[1] == "-":
            img = sys.stdin.buffer.read()
        else:
            with open(argv[1], "rb") as f:
                img = f.read()
    except OSError as e:
        print(f"unreadable: {e}", file=sys.stderr)
        return 2
    try:
        summary = read_image(img)
    except Unsupported as e:
        print(f"unsupported: {e}", file=sys.stderr)
        return 3
    except Invalid as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    json.dump(summary, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
