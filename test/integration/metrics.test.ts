// The optional Prometheus endpoints: grimseld's per-storage and furkad's per-detector figures as a scraper sees them.
import { strict as assert } from 'node:assert';
import { get } from 'node:http';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { sample } from '../fixtures/metrics.js';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { freePort } from '../fixtures/net.js';

function fetch(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    }).on('error', reject);
  });
}


describe('grimseld and furkad metrics', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let url: string;
  let furkadUrl: string;

  before(async () => {
    const port = await freePort();
    const furkadPort = await freePort();
    url = `http://127.0.0.1:${port}/metrics`;
    furkadUrl = `http://127.0.0.1:${furkadPort}/metrics`;
    ppu = new Ppu({ prefix: 'ppu-metrics', grimseld: { metrics_address: '127.0.0.1', metrics_port: port },
      furkad: { metrics_address: '127.0.0.1', metrics_port: furkadPort } });
    const blocker = path.join(ppu.work, 'not-a-directory');
    writeFileSync(blocker, 'a file where a directory should be\n');
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.broken': { type: 'OPTIONAL', target: path.join(blocker, 'data'), n_copy_processes: 1 },
    };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('counts copies, bytes, copy durations, files per state, failures and messages per storage, and the fill state', async () => {
    await ppu.startShift(950, 951, []);
    const sizes = [1000, 20_000, 300_000, 5, 4096];
    sizes.forEach((size, i) => writeImage(ppu.detectorRamdisks['1MF']!, `m/img${i}.cbf`, size));
    let text = '';
    await eventually(async () => {
      text = (await fetch(url)).body;
      return sample(text, 'grimseld_copies_total{storage="internal",outcome="copied"}') === sizes.length &&
        (sample(text, 'grimseld_messages_total{errcode="COPY_ERROR"}') ?? 0) >= 1;
    }, 60_000, 'the copies and a COPY_ERROR in the metrics');
    assert.equal(sample(text, 'grimseld_copied_bytes_total{storage="internal"}'), sizes.reduce((a, b) => a + b, 0));
    assert.equal(sample(text, 'grimseld_copy_duration_seconds_count{storage="internal"}'), sizes.length);
    assert.equal(sample(text, 'grimseld_copy_duration_seconds_bucket{le="+Inf",storage="internal"}'), sizes.length);
    // The gauge counts live records: a record whose copies are all final is dropped at the next 10 s compaction,
    // so on a loaded machine some of the five may be gone already. None may be counted twice, one at least is there.
    const live = sample(text, 'grimseld_files{storage="internal",state="copied"}') ?? 0;
    assert.ok(live >= 1 && live <= sizes.length, `live copied records ${live}, between 1 and ${sizes.length}`);
    assert.ok((sample(text, 'grimseld_copies_total{storage="broken",outcome="failed"}') ?? 0) >= 1, 'failures of the broken storage');
    assert.equal(sample(text, 'grimseld_copies_total{storage="broken",outcome="copied"}'), undefined);
    const fill = sample(text, `grimseld_fill_ratio{what="ramdisk",path="${ppu.ppuRamdisk}"}`);
    assert.ok(fill !== undefined && fill > 0 && fill <= 1, `ramdisk fill ratio ${fill}`);
    assert.match(text, /^# TYPE grimseld_copy_duration_seconds histogram$/m);
    assert.match(text, /^grimseld_process_resident_memory_bytes \d+/m, 'process metrics too');
  });

  it('furkad counts files and bytes per detector across shifts, and shows its state', async () => {
    // Independent of the other tests: its own shift and files, the totals read as differences.
    await ppu.startShift(955, 956, []);
    let text = (await fetch(furkadUrl)).body;
    const files0 = sample(text, 'furkad_files_total{detector="1MF"}') ?? 0;
    const bytes0 = sample(text, 'furkad_bytes_total{detector="1MF"}') ?? 0;
    const runs0 = sample(text, 'furkad_run_duration_seconds_count{detector="1MF"}') ?? 0;
    const sizes = [1000, 20_000, 5];
    sizes.forEach((size, i) => writeImage(ppu.detectorRamdisks['1MF']!, `f/img${i}.cbf`, size));
    // Files count as they are placed, bytes and runs when the run that placed them ends: waited for until at
    // least these bytes are counted, then checked exactly (never counted twice).
    const total = sizes.reduce((a, b) => a + b, 0);
    await eventually(async () => {
      text = (await fetch(furkadUrl)).body;
      return sample(text, 'furkad_shift_files{detector="1MF"}') === sizes.length && sample(text, 'furkad_awaiting_grimseld') === 0 &&
        (sample(text, 'furkad_bytes_total{detector="1MF"}') ?? 0) >= bytes0 + total;
    }, 30_000, "the shift's files in furkad's metrics, all handed over, their runs over");
    assert.equal(sample(text, 'furkad_files_total{detector="1MF"}'), files0 + sizes.length);
    assert.equal(sample(text, 'furkad_bytes_total{detector="1MF"}'), bytes0 + sizes.reduce((a, b) => a + b, 0));
    assert.equal(sample(text, 'furkad_detector_failing{detector="1MF"}'), 0);
    assert.equal(['idle', 'transferring'].map((st) => sample(text, `furkad_detector_state{detector="1MF",state="${st}"}`)).reduce((a, b) => a! + b!), 1);
    // Every run that moved files is timed; the files may have come in one run or several.
    const runs = sample(text, 'furkad_run_duration_seconds_count{detector="1MF"}') ?? 0;
    assert.ok(runs >= runs0 + 1 && runs <= runs0 + sizes.length, `runs timed: ${runs - runs0}`);
    assert.ok((sample(text, 'furkad_run_duration_seconds_sum{detector="1MF"}') ?? 0) > 0);
    // A new shift starts its own count; the totals go on.
    await ppu.startShift(960, 961, []);
    writeImage(ppu.detectorRamdisks['1MF']!, 'n/one.cbf', 100);
    await eventually(async () => {
      text = (await fetch(furkadUrl)).body;
      return sample(text, 'furkad_shift_files{detector="1MF"}') === 1 && (sample(text, 'furkad_bytes_total{detector="1MF"}') ?? 0) >= bytes0 + total + 100;
    }, 30_000, 'the new shift in the metrics, its run over');
    assert.equal(sample(text, 'furkad_files_total{detector="1MF"}'), files0 + sizes.length + 1);
    assert.equal(sample(text, 'furkad_bytes_total{detector="1MF"}'), bytes0 + sizes.reduce((a, b) => a + b, 0) + 100);
    assert.equal(sample(text, 'furkad_run_duration_seconds_count{detector="1MF"}'), runs + 1, 'the run of the new shift timed too');
  });

  it('answers only GET /metrics', async () => {
    const ok = await fetch(url);
    assert.equal(ok.status, 200);
    assert.match(ok.type, /^text\/plain; version=0\.0\.4/);
    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404);
    assert.equal((await fetch(furkadUrl)).status, 200);
  });
});
