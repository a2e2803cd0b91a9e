#!/usr/bin/env python3
"""Mark one symbol-version requirement (Vernaux entry in .gnu.version_r) of an ELF64
little-endian shared object as weak (VER_FLG_WEAK = 0x2), so the dynamic loader does
not refuse to load the object when the providing library lacks that version.

usage: elf_weaken_verneed.py FILE VERSION   (e.g. GLIBCXX_3.4.32)
Exit 0 when the entry is weak afterwards (already weak: nothing written), 1 when the
file has no such entry, 2 on malformed input. Standard library only.
"""
import struct
import sys

VER_FLG_WEAK = 0x2


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, wanted = sys.argv[1], sys.argv[2].encode()
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        print(f"{path}: not an ELF64 little-endian file", file=sys.stderr)
        return 2
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize
        return struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)

    def cstr(off):
        end = data.index(b"\0", off)
        return bytes(data[off:end])

    shstr_off = section(e_shstrndx)[4]
    verneed = None
    for i in range(e_shnum):
        s = section(i)
        if cstr(shstr_off + s[0]) == b".gnu.version_r":
            verneed = s
            break
    if verneed is None:
        print(f"{path}: no .gnu.version_r section", file=sys.stderr)
        return 1
    sec_off, sec_link, sec_info = verneed[4], verneed[6], verneed[7]
    strtab_off = section(sec_link)[4]

    off = sec_off
    for _ in range(sec_info):  # sh_info = number of Verneed entries
        vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, off)
        aux = off + vn_aux
        for _ in range(vn_cnt):
            vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
            if cstr(strtab_off + vna_name) == wanted:
                lib = cstr(strtab_off + vn_file).decode()
                if vna_flags & VER_FLG_WEAK:
                    print(f"{path}: {wanted.decode()} ({lib}) already weak")
                    return 0
                struct.pack_into("<H", data, aux + 4, vna_flags | VER_FLG_WEAK)
                with open(path, "r+b") as f:
                    f.write(data)
                print(f"{path}: marked {wanted.decode()} ({lib}) weak")
                return 0
            if vna_next == 0:
                break
            aux += vna_next
        if vn_next == 0:
            break
        off += vn_next
    print(f"{path}: no version requirement {wanted.decode()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
