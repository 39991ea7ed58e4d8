/**
 * Whether an ELF shared object holds every byte its headers point at. The dynamic loader maps a
 * file's segments as the program headers give them; a file cut short (an interrupted copy or
 * download) then faults with SIGBUS inside dlopen, which kills the process before `require` can
 * throw. Checking the extents first turns that into a reason the loader reports and falls back on.
 * Files that are not ELF are left to `require`, which refuses them with an error of its own.
 */
import fs from 'node:fs';

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

/** '' when the file is whole (or not ELF), else why it is not, e.g. 'truncated: ... ' */
export function elfTruncation(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return '';  // require() reports what is wrong with a file it cannot open
  }
  try {
    return extents(fd);
  } catch (e) {
    return `not readable as a shared object: ${(e as Error).message}`;  // a folder, an I/O error
  } finally {
    fs.closeSync(fd);
  }
}

/** the reason the headers of the ELF file open at `fd` point past its end, or '' */
function extents(fd: number): string {
  const size = fs.fstatSync(fd).size;
  const read = (offset: number, length: number): Buffer | undefined => {
    if (offset < 0 || offset + length > size) return undefined;
    const b = Buffer.alloc(length);
    return fs.readSync(fd, b, 0, length, offset) === length ? b : undefined;
  };
  const ident = read(0, 16);
  if (!ident || ELF_MAGIC.some((m, i) => ident[i] !== m)) return '';
  const wide = ident[4] === 2;  // ELFCLASS64
  const le = ident[5] !== 2;  // ELFDATA2LSB
  const header = read(0, wide ? 64 : 52);
  const cut = (needs: number, what: string) => `truncated: its ${what} should end at byte ${needs}, the file has ${size} bytes`;
  if (!header) return cut(wide ? 64 : 52, 'ELF header');
  const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const word = (b: Buffer, o: number) => (wide ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o));
  const phoff = word(header, wide ? 0x20 : 0x1c);
  const shoff = word(header, wide ? 0x28 : 0x20);
  const phentsize = u16(header, wide ? 0x36 : 0x2a);
  const phnum = u16(header, wide ? 0x38 : 0x2c);
  const shentsize = u16(header, wide ? 0x3a : 0x2e);
  const shnum = u16(header, wide ? 0x3c : 0x30);
  // an entry smaller than the format's (Elf32_Phdr 32 bytes, Elf64_Phdr 56) is no program header table
  if (phnum > 0 && phentsize < (wide ? 56 : 32)) return `malformed: program header entries of ${phentsize} bytes`;
  const table = read(phoff, phnum * phentsize);
  if (!table) return cut(phoff + phnum * phentsize, 'program headers');
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    const offset = word(table, at + (wide ? 0x08 : 0x04));
    const filesz = word(table, at + (wide ? 0x20 : 0x10));
    if (offset + filesz > size) return cut(offset + filesz, `segment ${i}'s bytes`);
  }
  // e_shnum 0 with a table present: the count lives in section 0, whose entry must be there
  const sections = shoff === 0 ? 0 : Math.max(shnum, 1) * shentsize;
  if (shoff + sections > size) return cut(shoff + sections, 'section headers');
  return '';
}
