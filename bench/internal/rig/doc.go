// Package rig is the test rig: what the process-level benchmarks (bench/runtime, bench/state,
// bench/kstreams) share, so that the three measure alike:
//
//	proc.go     the CPU time (/proc/<pid>/stat) and peak RSS (VmHWM) of a child process, this
//	            process's CPU, a child with a liveness check (Process), `retailflow run` on a
//	            topic set (RunEnv, StartRun) and its "restored state" log line (Restored)
//	traffic.go  generated traffic produced, unpaced or at a rate (Produce), and the wait for a
//	            group to commit the end of its inputs (WaitCaughtUp)
//	latency.go  input timestamp → output visible to a read_committed consumer, matched by the
//	            rf.source.* headers (Latency), and its percentiles (Quantile)
//	drain.go    a measured drain (Drain) and the franz-go consume → produce pass-through, the
//	            floor cost of moving the bytes (PassThrough)
//
// Linux only (/proc). Errors are returned; the benchmarks end on the first one.
package rig
