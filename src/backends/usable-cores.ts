/**
 * How many cores this process can keep busy: the CPUs its affinity allows
 * (os.availableParallelism(): taskset, a container's cpuset), and no more than its cgroup's CPU
 * quota (`docker run --cpus`, a Kubernetes CPU limit). Node 20's availableParallelism() does not
 * read the quota, so a container limited to 2 CPUs on a 64-core host would start 64 threads:
 * the quota is spent in a few milliseconds of each 100 ms period and the whole process is then
 * stopped for the rest of it, and 63 idle workers spinning between regions burn the quota too.
 * The native backend's default `threads` and its pool's spinning rule both use this count.
 */
import fs from 'node:fs';
import os from 'node:os';

type ReadFile = (file: string) => string | undefined;

const readFile: ReadFile = (file) => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

/** CPUs a cgroup v2 `cpu.max` ("quota period" or "max period") allows; undefined when unlimited or unreadable */
export function parseCpuMax(text: string | undefined): number | undefined {
  const [quota, period] = (text ?? '').trim().split(/\s+/);
  return quotaCpus(quota === 'max' ? -1 : Number(quota), Number(period ?? 100000));
}

function quotaCpus(quota: number, period: number): number | undefined {
  return Number.isFinite(quota) && quota > 0 && Number.isFinite(period) && period > 0 ? quota / period : undefined;
}

/** `dir` and every directory above it up to `root` (a limit set on a parent cgroup applies to its children too) */
function upTo(root: string, rel: string): string[] {
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  const dirs: string[] = [];
  for (let n = parts.length; n >= 0; n--) dirs.push([root, ...parts.slice(0, n)].join('/'));
  return dirs;
}

/**
 * The CPU quota of this process's cgroups, in CPUs (fractional), or undefined when there is
 * none. cgroup v2: cpu.max of its cgroup and each parent; v1: cpu.cfs_quota_us /
 * cpu.cfs_period_us of its `cpu` cgroup and each parent. Inside a container the cgroup path
 * /proc/self/cgroup gives may not exist in the container's view, where the mount's root is the
 * container's own cgroup: the walk up reaches that root too.
 */
export function cgroupCpuQuota(read: ReadFile = readFile): number | undefined {
  const self = read('/proc/self/cgroup');
  if (!self) return undefined;
  let limit: number | undefined;
  const take = (cpus: number | undefined) => {
    if (cpus !== undefined && (limit === undefined || cpus < limit)) limit = cpus;
  };
  for (const line of self.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, id, controllers, rel] = m;
    if (id === '0' && controllers === '') {
      for (const dir of upTo('/sys/fs/cgroup', rel)) take(parseCpuMax(read(`${dir}/cpu.max`)));
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of ['/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/cpu']) {
        for (const dir of upTo(mount, rel)) {
          const quota = read(`${dir}/cpu.cfs_quota_us`);
          if (quota !== undefined) take(quotaCpus(Number(quota.trim()), Number((read(`${dir}/cpu.cfs_period_us`) ?? '').trim())));
        }
      }
    }
  }
  return limit;
}

/** min(availableParallelism, the cgroup quota rounded up), at least 1 */
export function usableCores(read: ReadFile = readFile): number {
  const ap = (os as { availableParallelism?: () => number }).availableParallelism;
  const cpus = Math.max(1, typeof ap === 'function' ? ap() : os.cpus().length || 1);
  const quota = process.platform === 'linux' ? cgroupCpuQuota(read) : undefined;
  return quota === undefined ? cpus : Math.max(1, Math.min(cpus, Math.ceil(quota - 1e-9)));
}
