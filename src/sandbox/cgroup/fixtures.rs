//! Captured `/proc/self/{mountinfo,cgroup}` and cgroup file contents of the
//! host layouts spoolq must handle, for the parser tests.

/// This project's CI machine (kernel 6.18, no systemd): cgroup v1 controllers,
/// each on its own mount, plus a controller-less cgroup2 at
/// `/sys/fs/cgroup/unified`. Captured verbatim, minus one unrelated tmpfs.
pub const HYBRID_MOUNTINFO: &str = r"
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// `/proc/self/cgroup` on the CI machine, captured with the mountinfo above.
pub const HYBRID_CGROUP: &str = r"
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/8b785ded0fb4b0e41f76a88da9f4c1ad
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

/// A pure cgroup v2 host with systemd (Debian 12), inside a service.
pub const V2_SYSTEMD_MOUNTINFO: &str = r"
21 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
22 26 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
26 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
28 21 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
29 21 0:26 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
31 21 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:12 - bpf bpf rw,mode=700
";

/// `/proc/self/cgroup` of a `spoolq.service` on the pure v2 host.
pub const V2_SYSTEMD_CGROUP: &str = "0::/system.slice/spoolq.service\n";

/// A cgroup v1 host with systemd (CentOS 7 / Ubuntu 18.04 style): combined
/// `cpu,cpuacct` and `net_cls,net_prio` mounts, and systemd's empty unified
/// hierarchy.
pub const V1_COMBINED_MOUNTINFO: &str = r"
25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:32 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
";

/// `/proc/self/cgroup` of a `spoolq.service` on the v1 host.
pub const V1_COMBINED_CGROUP: &str = r"
12:pids:/system.slice/spoolq.service
11:freezer:/
8:memory:/system.slice/spoolq.service
5:net_cls,net_prio:/
3:cpu,cpuacct:/system.slice/spoolq.service
1:name=systemd:/system.slice/spoolq.service
0::/system.slice/spoolq.service
";

/// v2 `cpu.stat`.
pub const V2_CPU_STAT: &str = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 15\nnr_throttled 12\nthrottled_usec 1180000\n";

/// v2 `memory.events` after an OOM kill.
pub const V2_MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 118\noom 2\noom_kill 1\noom_group_kill 0\n";

/// The start of a v2 `memory.stat`.
pub const V2_MEMORY_STAT: &str = "anon 1048576\nfile 4096\nkernel 278528\nkernel_stack 16384\n";
