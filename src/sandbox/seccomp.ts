/**
 * The seccomp filter every bwrap sandbox runs under (`bwrap --seccomp FD`): a classic BPF
 * program assembled here, without libseccomp. It kills a process calling in through a
 * foreign architecture, refuses the x32 ABI, refuses the deny list below with EPERM, answers
 * clone3 with ENOSYS (so that glibc falls back to clone, whose flags a filter can see), and
 * allows everything else. docs/sessions.md lists the deny list.
 */

/** Calls no agent needs, by family; each refused with EPERM. */
export const deniedFamilies: Record<string, string[]> = {
  io_uring: ["io_uring_setup", "io_uring_enter", "io_uring_register"],
  keyring: ["add_key", "request_key", "keyctl"],
  ptrace: [
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
  ],
  perf: ["perf_event_open"],
  bpf: ["bpf"],
  kexec: ["kexec_load", "kexec_file_load"],
  modules: ["init_module", "finit_module", "delete_module"],
  mount: [
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
  ],
  userfaultfd: ["userfaultfd"],
  namespaces: ["unshare", "setns"],
  host: [
    "open_by_handle_at",
    "name_to_handle_at",
    "syslog",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "quotactl",
    "lookup_dcookie",
  ],
};

type Arch = "x86_64" | "aarch64";

/** Syscall numbers: x86_64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h. */
const numbers: Record<string, Record<Arch, number>> = {
  io_uring_setup: { x86_64: 425, aarch64: 425 },
  io_uring_enter: { x86_64: 426, aarch64: 426 },
  io_uring_register: { x86_64: 427, aarch64: 427 },
  add_key: { x86_64: 248, aarch64: 217 },
  request_key: { x86_64: 249, aarch64: 218 },
  keyctl: { x86_64: 250, aarch64: 219 },
  ptrace: { x86_64: 101, aarch64: 117 },
  process_vm_readv: { x86_64: 310, aarch64: 270 },
  process_vm_writev: { x86_64: 311, aarch64: 271 },
  kcmp: { x86_64: 312, aarch64: 272 },
  pidfd_getfd: { x86_64: 438, aarch64: 438 },
  process_madvise: { x86_64: 440, aarch64: 440 },
  perf_event_open: { x86_64: 298, aarch64: 241 },
  bpf: { x86_64: 321, aarch64: 280 },
  kexec_load: { x86_64: 246, aarch64: 104 },
  kexec_file_load: { x86_64: 320, aarch64: 294 },
  init_module: { x86_64: 175, aarch64: 105 },
  finit_module: { x86_64: 313, aarch64: 273 },
  delete_module: { x86_64: 176, aarch64: 106 },
  mount: { x86_64: 165, aarch64: 40 },
  umount2: { x86_64: 166, aarch64: 39 },
  pivot_root: { x86_64: 155, aarch64: 41 },
  open_tree: { x86_64: 428, aarch64: 428 },
  move_mount: { x86_64: 429, aarch64: 429 },
  fsopen: { x86_64: 430, aarch64: 430 },
  fsconfig: { x86_64: 431, aarch64: 431 },
  fsmount: { x86_64: 432, aarch64: 432 },
  fspick: { x86_64: 433, aarch64: 433 },
  mount_setattr: { x86_64: 442, aarch64: 442 },
  userfaultfd: { x86_64: 323, aarch64: 282 },
  unshare: { x86_64: 272, aarch64: 97 },
  setns: { x86_64: 308, aarch64: 268 },
  open_by_handle_at: { x86_64: 304, aarch64: 265 },
  name_to_handle_at: { x86_64: 303, aarch64: 264 },
  syslog: { x86_64: 103, aarch64: 116 },
  acct: { x86_64: 163, aarch64: 89 },
  swapon: { x86_64: 167, aarch64: 224 },
  swapoff: { x86_64: 168, aarch64: 225 },
  reboot: { x86_64: 169, aarch64: 142 },
  quotactl: { x86_64: 179, aarch64: 60 },
  lookup_dcookie: { x86_64: 212, aarch64: 18 },
  // Checked by argument, not denied outright:
  clone: { x86_64: 56, aarch64: 220 },
  clone3: { x86_64: 435, aarch64: 435 },
  personality: { x86_64: 135, aarch64: 92 },
};

const auditArch: Record<Arch, number> = { x86_64: 0xc000003e, aarch64: 0xc00000b7 };
/** x32 calls on x86_64 carry this bit; a filter written for x86_64 numbers must refuse them. */
const x32Bit = 0x40000000;
/** CLONE_NEWTIME | NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET. */
const cloneNamespaceMask = 0x80 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x70000000;
/** personality() values that are allowed: PER_LINUX, PER_LINUX32, and the query 0xffffffff. */
const allowedPersonalities = [0, 0x0008, 0xffffffff];

const EPERM = 1;
const ENOSYS = 38;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;

// Classic BPF opcodes.
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;

// Offsets in struct seccomp_data.
const NR = 0;
const ARCH = 4;
/** The low 32 bits of the first argument (little-endian). */
const ARG0_LOW = 16;

/** One instruction; jump targets are labels, resolved by `assemble`. */
type Op =
  | { op: "ld"; offset: number }
  | { op: "jeq" | "jge" | "jset"; k: number; yes?: string; no?: string }
  | { op: "ret"; k: number };
type Insn = Op | { label: string };

function assemble(program: Insn[]): Buffer {
  const code = program.filter((i): i is Op => !("label" in i));
  const at = new Map<string, number>();
  let n = 0;
  for (const insn of program) {
    if ("label" in insn) at.set(insn.label, n);
    else n++;
  }
  const out = Buffer.alloc(code.length * 8);
  code.forEach((insn, pc) => {
    const jump = (label: string | undefined): number => {
      if (label === undefined) return 0;
      const target = at.get(label);
      if (target === undefined) throw new Error(`seccomp: no label ${label}`);
      const offset = target - pc - 1;
      if (offset < 0 || offset > 255) throw new Error(`seccomp: jump to ${label} out of range`);
      return offset;
    };
    let op: number;
    let jt = 0;
    let jf = 0;
    let k: number;
    if (insn.op === "ld") [op, k] = [LD_W_ABS, insn.offset];
    else if (insn.op === "ret") [op, k] = [RET_K, insn.k];
    else {
      op = { jeq: JEQ_K, jge: JGE_K, jset: JSET_K }[insn.op];
      [jt, jf, k] = [jump(insn.yes), jump(insn.no), insn.k];
    }
    out.writeUInt16LE(op, pc * 8);
    out.writeUInt8(jt, pc * 8 + 2);
    out.writeUInt8(jf, pc * 8 + 3);
    out.writeUInt32LE(k >>> 0, pc * 8 + 4);
  });
  return out;
}

function archBody(arch: Arch): Insn[] {
  const nr = (name: string) => numbers[name]![arch];
  const l = (name: string) => `${arch}:${name}`;
  return [
    { label: l("start") },
    { op: "ld", offset: NR },
    ...(arch === "x86_64" ? [{ op: "jge" as const, k: x32Bit, yes: l("eperm") }] : []),
    { op: "jeq", k: nr("clone3"), yes: l("enosys") },
    { op: "jeq", k: nr("clone"), yes: l("clone") },
    { op: "jeq", k: nr("personality"), yes: l("personality") },
    ...Object.values(deniedFamilies)
      .flat()
      .map((name) => ({ op: "jeq" as const, k: nr(name), yes: l("eperm") })),
    { op: "ret", k: RET_ALLOW },
    { label: l("clone") },
    { op: "ld", offset: ARG0_LOW },
    { op: "jset", k: cloneNamespaceMask, yes: l("eperm") },
    { op: "ret", k: RET_ALLOW },
    { label: l("personality") },
    { op: "ld", offset: ARG0_LOW },
    ...allowedPersonalities.map((k) => ({ op: "jeq" as const, k, yes: l("allow") })),
    { label: l("eperm") },
    { op: "ret", k: RET_ERRNO | EPERM },
    { label: l("enosys") },
    { op: "ret", k: RET_ERRNO | ENOSYS },
    { label: l("allow") },
    { op: "ret", k: RET_ALLOW },
  ];
}

let compiled: Buffer | undefined;

/** The filter as bwrap reads it: the raw `struct sock_filter` array, in host byte order. */
export function seccompFilter(): Buffer {
  compiled ??= assemble([
    { op: "ld", offset: ARCH },
    { op: "jeq", k: auditArch.x86_64, yes: "x86_64:start" },
    { op: "jeq", k: auditArch.aarch64, yes: "aarch64:start" },
    { op: "ret", k: RET_KILL_PROCESS },
    ...archBody("x86_64"),
    ...archBody("aarch64"),
  ]);
  return compiled;
}
