// Progressive enhancement of the console pages: live decisions over server-sent events, and loading a
// candidate policy from a file. Every value from the server is written with textContent.
(() => {
  const table = document.getElementById('decisions');
  if (table) {
    const body = table.tBodies[0];
    const status = document.getElementById('live-status');
    const MAX_ROWS = 200;
    const cell = (row, text) => {
      const td = document.createElement('td');
      td.textContent = text;
      row.appendChild(td);
      return td;
    };
    const source = new EventSource(`/console/events${location.search}`);
    source.addEventListener('open', () => {
      if (status) status.textContent = 'Live: new decisions appear at the top.';
    });
    source.addEventListener('error', () => {
      if (status) status.textContent = 'Live updates interrupted; reconnecting…';
    });
    source.addEventListener('decision', (ev) => {
      let d;
      try {
        d = JSON.parse(ev.data);
      } catch {
        return;
      }
      const row = document.createElement('tr');
      row.dataset.id = String(d.id);
      row.className = 'fresh';
      const t = document.createElement('time');
      const iso = new Date(d.time).toISOString();
      t.dateTime = iso;
      t.textContent = iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
      cell(row, '').appendChild(t);
      cell(row, String(d.agent));
      const link = document.createElement('a');
      link.href = `/console/decisions/${encodeURIComponent(String(d.id))}`;
      link.textContent = String(d.tool);
      cell(row, '').appendChild(link);
      const badge = document.createElement('span');
      const effect = String(d.effect);
      badge.className = `effect effect-${['allow', 'deny', 'ask'].includes(effect) ? effect : 'other'}`;
      badge.textContent = effect;
      cell(row, '').appendChild(badge);
      cell(row, d.rule === null ? 'none' : String(d.rule));
      cell(row, String(d.reason));
      body.insertBefore(row, body.firstChild);
      while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    });
  }

  const file = document.getElementById('candidate-file');
  const text = document.getElementById('candidate');
  if (file && text) {
    file.addEventListener('change', () => {
      const f = file.files?.[0];
      if (f)
        f.text().then((t) => {
          text.value = t;
        });
    });
  }
})();
