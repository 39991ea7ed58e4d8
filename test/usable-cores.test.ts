/**
 * The native backend's default thread count heeds a cgroup CPU quota (docker --cpus, a
 * Kubernetes CPU limit), which Node 20's os.availableParallelism() does not: parsing against
 * made-up cgroup files, then a real v1 cgroup with a quota of one CPU where this machine lets the
 * test make one (root, a writable cpu controller; skipped elsewhere).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeIsas } from '../src/backends/native.js';
import { cgroupCpuQuota, parseCpuMax, usableCores } from '../src/backends/usable-cores.js';

const files = (map: Record<string, string>) => (file: string) => map[file];
const cpus = os.availableParallelism();

describe('usable cores: cgroup CPU quotas', () => {
  it('parses cgroup v2 cpu.max', () => {
    assert.equal(parseCpuMax('200000 100000\n'), 2);
    assert.equal(parseCpuMax('150000 100000'), 1.5);
    assert.equal(parseCpuMax('max 100000'), undefined);
    assert.equal(parseCpuMax(''), undefined);
    assert.equal(parseCpuMax(undefined), undefined);
  });

  it('v2: a container (its own cgroup at the mount root) and the tightest limit of a nested path', () => {
    assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), 1.5);
    const nested = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
      '/sys/fs/cgroup/kubepods/cpu.max': 'max 100000',
      '/sys/fs/cgroup/kubepods/pod1/cpu.max': '300000 100000',
      '/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000',
    });
    assert.equal(cgroupCpuQuota(nested), 3);
    // the path seen from the host, absent in the container's view: its root still counts
    assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/system.slice/docker-1.scope', '/sys/fs/cgroup/cpu.max': '100000 100000' })), 1);
  });

  it('v1: cpu.cfs_quota_us over cpu.cfs_period_us; -1 is no limit', () => {
    const v1 = (quota: string) =>
      files({
        '/proc/self/cgroup': '5:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': quota,
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      });
    assert.equal(cgroupCpuQuota(v1('50000\n')), 0.5);
    assert.equal(cgroupCpuQuota(v1('-1\n')), undefined);
  });

  it('no cgroup information: no limit', () => {
    assert.equal(cgroupCpuQuota(files({})), undefined);
    assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': 'garbage' })), undefined);
  });

  it('usableCores: the quota rounded up, never above availableParallelism, at least 1', function () {
    if (process.platform !== 'linux') this.skip();
    const withQuota = (q: string) => files({ '/proc/self/cgroup': '0::/', '/sys/fs/cgroup/cpu.max': q });
    assert.equal(usableCores(withQuota('50000 100000')), 1);
    assert.equal(usableCores(withQuota('100000 100000')), 1);
    assert.equal(usableCores(withQuota(`${(cpus + 0.5) * 100000} 100000`)), cpus);
    assert.equal(usableCores(withQuota('max 100000')), cpus);
    if (cpus > 1) assert.equal(usableCores(withQuota('100001 100000')), 2);
  });

  it('a process in a real cgroup with a quota of one CPU defaults to one native thread (child process)', function () {
    this.timeout(60_000);
    const mount = '/sys/fs/cgroup/cpu';
    const dir = path.join(mount, `simd-attention-test-${process.pid}`);
    if (process.platform !== 'linux' || cpus < 2 || !fs.existsSync(path.join(mount, 'cpu.cfs_quota_us'))) this.skip();
    if (nativeIsas().length === 0) this.skip(); // no addon here (no compiler, or an install that ran no script)
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), '100000');
    } catch {
      this.skip(); // no permission to make a cgroup here
    }
    try {
      const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
      const code = `
        const { writeFileSync } = await import('node:fs');
        const { loadSync } = await import(${JSON.stringify(path.join(root, 'src', 'index.ts'))});
        const outside = loadSync({ backend: 'native' }).info().threads;
        writeFileSync(${JSON.stringify(path.join(dir, 'cgroup.procs'))}, String(process.pid));
        const inside = loadSync({ backend: 'native' });
        console.log(JSON.stringify({ outside, inside: inside.info().threads, backend: inside.info().backend }));`;
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const got = JSON.parse(r.stdout.trim().split('\n').pop()!);
      if (got.backend !== 'native') this.skip();
      assert.deepEqual(got, { outside: cpus, inside: 1, backend: 'native' });
    } finally {
      fs.rmdirSync(dir);
    }
  });
});
