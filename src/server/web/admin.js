// The admin page: state, a rebuild with its live progress (the server stream), snapshots.
// Every call carries the admin key from this tab's sessionStorage.
import { call, stream, GrpcError } from './grpc.js';

const $ = (id) => document.getElementById(id);
const key = () => sessionStorage.getItem('mms_admin_key') || '';
const td = (t) => { const e = document.createElement('td'); e.textContent = t; return e; };
const row = (...cells) => { const tr = document.createElement('tr'); tr.append(...cells.map(td)); return tr; };

function say(text, kind = '') { $('status').textContent = text; $('status').className = kind; }
function why(e) {
  if (!(e instanceof GrpcError)) return e.message;
  if (e.codeName === 'UNAUTHENTICATED') return 'Enter an admin API key above.';
  if (e.codeName === 'PERMISSION_DENIED') return `This key is not an admin key (${e.message}).`;
  return `${e.codeName}: ${e.message}`;
}

$('admin-key').value = key();
$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('mms_admin_key', $('admin-key').value.trim());
  refresh();
});

async function refresh() {
  try {
    const s = await call('AdminService', 'Status', 'StatusRequest', 'StatusResponse', {}, { key: key() });
    const stats = $('stats');
    stats.replaceChildren();
    const add = (k, v) => { const d = document.createElement('div'); const dt = document.createElement('dt'); const dd = document.createElement('dd'); dt.textContent = k; dd.textContent = v; d.append(dt, dd); stats.append(d); };
    add('Items', s.items.toLocaleString());
    add('Generation', String(s.generation));
    add('Generations on disk', s.generations_on_disk.join(', ') || '—');
    add('Last version', String(s.last_version));
    add('Rebuilding', s.rebuilding ? 'yes' : 'no');
    add('Recommendation model', s.model_version ? `v${s.model_version}` : 'none');
    add('Interactions', s.interactions.toLocaleString());
    add('Uptime', `${Math.floor(s.uptime_seconds / 60)} min`);
    add('Server', s.version);
    $('spaces').replaceChildren(...s.spaces.map((sp) => row(sp.name, sp.role || '—', sp.dim, sp.base_vectors, sp.fresh_vectors, sp.tombstones, sp.layer_counts.join(' / ') || (sp.base_vectors ? 'none: scanned exactly' : '—'))));
    $('models').replaceChildren(...s.models.map((m) => row(m.id, m.kind, m.provider, m.dim || '')));
    if (!s.models.length) $('models').replaceChildren(row('none loaded (the server runs without encoders)', '', '', ''));
    say('Connected.', 'ok');
    document.body.dataset.status = 'loaded';
  } catch (e) {
    say(why(e), 'error');
    document.body.dataset.status = 'error';
  }
}

$('refresh').addEventListener('click', refresh);

$('rebuild').addEventListener('click', async () => {
  const btn = $('rebuild');
  const bar = $('rebuild-bar');
  const phase = $('rebuild-phase');
  btn.disabled = true;
  bar.value = 0;
  phase.textContent = 'Starting…';
  phase.className = '';
  document.body.dataset.rebuild = 'running';
  try {
    let last = null;
    for await (const p of stream('AdminService', 'Rebuild', 'RebuildRequest', 'RebuildProgress', {}, { key: key() })) {
      last = p;
      bar.max = Math.max(1, p.total);
      bar.value = p.done;
      const eta = p.eta_seconds > 0.5 ? `, about ${Math.ceil(p.eta_seconds)} s left` : '';
      phase.textContent = `${p.phase}${p.space ? ` (${p.space})` : ''}: ${p.done} / ${p.total}${eta}`;
      document.body.dataset.rebuildUpdates = String((Number(document.body.dataset.rebuildUpdates) || 0) + 1);
    }
    if (last && last.phase === 'done') {
      bar.max = 1; bar.value = 1;
      phase.textContent = `Done: generation ${last.generation}.`;
      phase.className = 'ok';
      document.body.dataset.rebuild = 'done';
    } else {
      phase.textContent = `Ended without finishing${last ? ` (last phase: ${last.phase})` : ''}.`;
      phase.className = 'error';
      document.body.dataset.rebuild = 'error';
    }
    refresh();
  } catch (e) {
    phase.textContent = `Rebuild refused: ${why(e)}`;
    phase.className = 'error';
    document.body.dataset.rebuild = 'error';
  } finally {
    btn.disabled = false;
  }
});

$('snap-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const out = $('snap-result');
  out.textContent = 'Taking a snapshot…';
  out.className = '';
  try {
    const name = $('snap-name').value.trim();
    const r = await call('AdminService', 'Snapshot', 'SnapshotRequest', 'SnapshotResponse', name ? { name } : {}, { key: key() });
    out.textContent = `Snapshot ${r.name}: version ${r.last_version} in ${r.directory} (${(r.bytes / 1e6).toFixed(1)} MB, ${r.seconds.toFixed(1)} s).`;
    out.className = 'ok';
  } catch (err) {
    out.textContent = why(err);
    out.className = 'error';
  }
});

refresh();
