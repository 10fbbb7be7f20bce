// The BullMQ peer of Trellis's benchmark. `go run ./bench` runs it as
//   node bench.mjs --scenario S --n N --concurrency C --redis URL --prefix P --enqueuers E
// on the same Redis as Trellis, under its own key prefix (which the harness
// deletes afterwards), and reads its stdout: {"progress":d,"total":t} lines
// while it runs and one {"result":{...}} line at the end, with the same
// fields as the harness's Result.
//
// Shapes, as close to Trellis's as BullMQ allows:
//   independent   n jobs added with addBulk (chunks of 500, E in flight), then one Worker of concurrency C
//   fanout        n flows of 1 parent + 10 children through FlowProducer, the Worker already running;
//                 BullMQ runs a flow's children first and the parent after them
//   chain         n chains 100 deep (nested FlowProducer children), one after the other; the deepest runs first
//   fullplansave  n plan trees of 145 jobs (1 → 4 → 5 → 6) with no-op processors, leaves first
// Latencies come from timestamps taken in this process, as in the Go harness:
// enqueue call → processor start for jobs nothing waits on, and the last
// dependency's processor returning → the dependent's processor starting.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { Queue, Worker, FlowProducer } from 'bullmq';
import IORedis from 'ioredis';

const require = createRequire(import.meta.url);
const bullmqVersion = require('bullmq/package.json').version;

function parseArgs(argv) {
  const o = { scenario: 'independent', n: 0, concurrency: 50, redis: 'redis://127.0.0.1:6379/0', prefix: 'benchbull', enqueuers: 8 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--?/, '');
    const v = argv[i + 1];
    if (!(k in o)) throw new Error(`unknown flag --${k}`);
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  return o;
}

const opt = parseArgs(process.argv);
const queueName = 'bench';
const conn = () => new IORedis(opt.redis, { maxRetriesPerRequest: null });
const admin = conn();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function snapshot() {
  const raw = await admin.call('INFO', 'commandstats', 'cpu', 'memory');
  let cmds = 0;
  let cpu = 0;
  let mem = 0;
  const byCmd = {};
  for (const line of raw.split('\n')) {
    const l = line.trim();
    if (l.startsWith('cmdstat_')) {
      const m = /calls=(\d+)/.exec(l);
      if (m) {
        cmds += Number(m[1]);
        byCmd[l.slice(8, l.indexOf(':'))] = Number(m[1]);
      }
    } else if (l.startsWith('used_cpu_sys:') || l.startsWith('used_cpu_user:')) {
      cpu += Number(l.split(':')[1]);
    } else if (l.startsWith('used_memory:')) {
      mem = Number(l.split(':')[1]);
    }
  }
  const u = process.cpuUsage();
  return { cmds, byCmd, cpu, mem, proc: (u.user + u.system) / 1e6 };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return undefined;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

// recorder mirrors the Go harness's: per job index, enqueue call start,
// processor start and end (ms, performance.now()), and what each job waits on.
function recorder(n) {
  const r = {
    enq: new Float64Array(n), start: new Float64Array(n), end: new Float64Array(n),
    deps: new Array(n), done: 0, want: n, waiters: [],
  };
  r.ran = (i, s) => {
    r.start[i] = s;
    r.end[i] = performance.now();
  };
  r.completed = () => {
    r.done++;
    while (r.waiters.length && r.waiters[0].at <= r.done) r.waiters.shift().resolve();
  };
  r.until = (count) => new Promise((resolve) => {
    if (r.done >= count) resolve();
    else r.waiters.push({ at: count, resolve });
  });
  r.fill = (res) => {
    const enqStart = [];
    const hop = [];
    for (let i = 0; i < n; i++) {
      const d = r.deps[i];
      if (!d || d.length === 0) enqStart.push(r.start[i] - r.enq[i]);
      else hop.push(r.start[i] - Math.max(...d.map((j) => r.end[j])));
    }
    enqStart.sort((a, b) => a - b);
    hop.sort((a, b) => a - b);
    res.enq_start_p50_ms = percentile(enqStart, 0.5);
    res.enq_start_p99_ms = percentile(enqStart, 0.99);
    res.hop_p50_ms = percentile(hop, 0.5);
    res.hop_p99_ms = percentile(hop, 0.99);
  };
  return r;
}

function cost(res, a, b, n) {
  if (b.cmds >= a.cmds) {
    res.cmds_per_node = (b.cmds - a.cmds) / n;
    res.per_command = {};
    for (const [k, v] of Object.entries(b.byCmd)) {
      const d = v - (a.byCmd[k] || 0);
      if (d > 0) res.per_command[k] = d / n;
    }
  }
  else res.note = 'INFO commandstats went backwards (CONFIG RESETSTAT during the run?): commands not counted';
  res.redis_cpu_us_per_node = ((b.cpu - a.cpu) * 1e6) / n;
  res.proc_cpu_us_per_node = ((b.proc - a.proc) * 1e6) / n;
}

function startWorker(rec, concurrency) {
  const worker = new Worker(queueName, async (job) => {
    rec.ran(job.data.i, performance.now());
    return null;
  }, { connection: conn(), prefix: opt.prefix, concurrency });
  worker.on('completed', () => rec.completed());
  worker.on('failed', (job, err) => {
    // A no-op job that fails means the run is broken: stop rather than wait.
    console.error(`bullmq peer: job ${job && job.id} failed: ${err && err.message}`);
    process.exit(1);
  });
  return worker;
}

function progress(rec, extra = () => 0, total = rec.want) {
  const t = setInterval(() => emit({ progress: rec.done + extra(), total }), 200);
  return () => { clearInterval(t); emit({ progress: rec.done + extra(), total }); };
}

// pool runs fn(i) for i in [0, n) with k in flight.
async function pool(n, k, fn) {
  let next = 0;
  const lanes = [];
  for (let w = 0; w < Math.min(k, n); w++) {
    lanes.push((async () => {
      for (;;) {
        const i = next++;
        if (i >= n) return;
        await fn(i);
      }
    })());
  }
  await Promise.all(lanes);
}

function envelope(type, data) {
  return { messageType: type, timestamp: new Date().toISOString(), userId: 'trainer-1', data };
}

function result(scenario, variant, n) {
  return {
    engine: 'bullmq', scenario, variant, concurrency: opt.concurrency, nodes: n,
    version: `${bullmqVersion} (node ${process.version})`,
  };
}

async function independent() {
  const n = opt.n;
  const rec = recorder(n);
  let enqueued = 0;
  const stop = progress(rec, () => enqueued, 2 * n); // enqueue, then run
  const queue = new Queue(queueName, { connection: conn(), prefix: opt.prefix });
  await queue.waitUntilReady();
  const s0 = await snapshot();
  const t0 = performance.now();
  const chunk = 500;
  await pool(Math.ceil(n / chunk), opt.enqueuers, async (c) => {
    const jobs = [];
    const at = performance.now();
    for (let i = c * chunk; i < Math.min(n, (c + 1) * chunk); i++) {
      rec.enq[i] = at;
      jobs.push({ name: 'BENCH_NOOP', data: { i } });
    }
    await queue.addBulk(jobs);
    enqueued += jobs.length;
  });
  const tEnq = performance.now();
  const s1 = await snapshot();
  const tRun = performance.now();
  const worker = startWorker(rec, opt.concurrency);
  await rec.until(n);
  const tEnd = performance.now();
  const s2 = await snapshot();
  stop();
  await worker.close();
  await queue.close();
  const res = result('independent', `C=${opt.concurrency}`, n);
  res.seconds = (tEnd - t0) / 1e3;
  res.nodes_per_s = n / res.seconds;
  res.enqueue_seconds = (tEnq - t0) / 1e3;
  res.enqueue_per_s = n / res.enqueue_seconds;
  res.run_per_s = n / ((tEnd - tRun) / 1e3);
  cost(res, s0, s2, n);
  if (s1.cmds >= s0.cmds) res.enq_cmds_per_node = (s1.cmds - s0.cmds) / n;
  if (s2.cmds >= s1.cmds) res.run_cmds_per_node = (s2.cmds - s1.cmds) / n;
  rec.fill(res);
  return res;
}

// flows adds count flows built by make(k, rec) with the worker running.
async function flows(scenario, variant, count, perFlow, make) {
  const n = count * perFlow;
  const rec = recorder(n);
  const stop = progress(rec);
  const worker = startWorker(rec, opt.concurrency);
  await worker.waitUntilReady();
  const producer = new FlowProducer({ connection: conn(), prefix: opt.prefix });
  const s0 = await snapshot();
  const t0 = performance.now();
  await pool(count, opt.enqueuers, async (k) => {
    const tree = make(k, rec);
    const at = performance.now();
    for (let i = k * perFlow; i < (k + 1) * perFlow; i++) rec.enq[i] = at;
    await producer.add(tree);
  });
  const tEnq = performance.now();
  await rec.until(n);
  const tEnd = performance.now();
  const s1 = await snapshot();
  stop();
  await worker.close();
  await producer.close();
  const res = result(scenario, variant, n);
  res.seconds = (tEnd - t0) / 1e3;
  res.nodes_per_s = n / res.seconds;
  res.flows_per_s = count / res.seconds;
  res.enqueue_seconds = (tEnq - t0) / 1e3;
  res.enqueue_per_s = n / res.enqueue_seconds;
  cost(res, s0, s1, n);
  rec.fill(res);
  return res;
}

function fanout() {
  const width = 10;
  const per = 1 + width;
  return flows('fanout', `${opt.n}×(1+${width})`, opt.n, per, (k, rec) => {
    const first = k * per;
    const children = [];
    rec.deps[first] = [];
    for (let c = 1; c <= width; c++) {
      children.push({ name: 'BENCH_NOOP', queueName, data: { i: first + c } });
      rec.deps[first].push(first + c);
    }
    return { name: 'BENCH_NOOP', queueName, data: { i: first }, children };
  });
}

function plan(k, rec) {
  let i = k * 145;
  const planId = `plan-${k}`;
  const node = (type, data, children) => {
    const me = i++;
    const kids = children();
    rec.deps[me] = kids.map((c) => c.data.i);
    return { name: type, queueName, data: { i: me, ...envelope(type, data) }, children: kids };
  };
  return node('WORKOUT_PLAN_CREATE', { planId, name: `Strength block ${k}`, clientId: 'client-1', trainerId: 'trainer-1', isActive: true }, () => {
    const phases = [];
    for (let p = 0; p < 4; p++) {
      const phaseId = `${planId}-ph${p}`;
      phases.push(node('WORKOUT_PHASE_CREATE', { planId, clientId: 'client-1', trainerId: 'trainer-1', phase: { id: phaseId, name: `Phase ${p + 1}`, orderNumber: p + 1, isActive: p === 0 } }, () => {
        const sessions = [];
        for (let s = 0; s < 5; s++) {
          const sessionId = `${phaseId}-s${s}`;
          sessions.push(node('WORKOUT_SESSION_CREATE', { planId, phaseId, session: { id: sessionId, name: `Day ${s + 1}`, orderNumber: s + 1 } }, () => {
            const exercises = [];
            for (let e = 0; e < 6; e++) {
              exercises.push(node('WORKOUT_EXERCISE_CREATE', { planId, phaseId, sessionId, exercise: { id: `${sessionId}-e${e}`, name: 'Back squat', orderNumber: e + 1, sets: 4, reps: 8, weight: 80, rest: 120, tempo: '3-1-1-0' } }, () => []));
            }
            return exercises;
          }));
        }
        return sessions;
      }));
    }
    return phases;
  });
}

function fullplansave() {
  return flows('fullplansave', `${opt.n} plans × 145, no-op steps`, opt.n, 145, plan);
}

async function chain() {
  const depth = 100;
  const reps = opt.n;
  const n = depth * reps;
  const rec = recorder(n);
  const stop = progress(rec);
  const worker = startWorker(rec, opt.concurrency);
  await worker.waitUntilReady();
  const producer = new FlowProducer({ connection: conn(), prefix: opt.prefix });
  const s0 = await snapshot();
  const t0 = performance.now();
  let enqMs = 0;
  const perHop = [];
  for (let k = 0; k < reps; k++) {
    const first = k * depth;
    // first is the root, which BullMQ runs last; first+depth-1 runs first.
    let tree = null;
    for (let d = depth - 1; d >= 0; d--) {
      const i = first + d;
      rec.deps[i] = tree ? [tree.data.i] : [];
      tree = { name: 'BENCH_NOOP', queueName, data: { i }, children: tree ? [tree] : [] };
    }
    const at = performance.now();
    for (let i = first; i < first + depth; i++) rec.enq[i] = at;
    await producer.add(tree);
    enqMs += performance.now() - at;
    await rec.until(first + depth);
    perHop.push((rec.start[first] - rec.start[first + depth - 1]) / (depth - 1));
  }
  const tEnd = performance.now();
  const s1 = await snapshot();
  stop();
  await worker.close();
  await producer.close();
  perHop.sort((a, b) => a - b);
  const mid = perHop.length >> 1;
  const res = result('chain', `${depth} deep, median of ${reps}`, n);
  res.seconds = (tEnd - t0) / 1e3;
  res.nodes_per_s = n / res.seconds;
  res.enqueue_seconds = enqMs / 1e3;
  res.enqueue_per_s = n / res.enqueue_seconds;
  res.ms_per_hop = perHop.length % 2 ? perHop[mid] : (perHop[mid - 1] + perHop[mid]) / 2;
  cost(res, s0, s1, n);
  rec.fill(res);
  return res;
}

const scenarios = { independent, fanout, chain, fullplansave };

async function main() {
  const fn = scenarios[opt.scenario];
  if (!fn) throw new Error(`bullmq peer: unknown scenario ${opt.scenario}`);
  if (!(opt.n > 0)) throw new Error('bullmq peer: --n must be positive');
  const res = await fn();
  emit({ result: res });
  await admin.quit();
}

main().then(() => process.exit(0), (err) => {
  console.error('bullmq peer:', err && err.stack ? err.stack : err);
  process.exit(1);
});
