// Portcullis portal: opens the launcher after Connect and follows the connection's state.
// Plain ES2017; no inline script anywhere (the Content-Security-Policy forbids it).
'use strict';

(function () {
  const POLL_MS = 1000;
  const TERMINAL = ['ended', 'expired', 'failed'];
  const MESSAGES = {
    waiting: 'Waiting for the launcher to start…',
    preparing: 'Preparing the connection…',
    connected: 'Connected.',
    ended: 'The connection has ended.',
    expired: 'No launcher answered in time.',
    failed: 'The launcher did not open the tunnel in time.',
  };

  function bytes(count) {
    const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    if (count < 1024) {
      return count + ' B';
    }
    let value = count / 1024;
    let unit = 0;
    while (value >= 1024 && unit + 1 < units.length) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(1) + ' ' + units[unit];
  }

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    if (secs < 60) {
      return secs + ' s';
    }
    if (secs < 3600) {
      return Math.floor(secs / 60) + ' min ' + (secs % 60) + ' s';
    }
    return Math.floor(secs / 3600) + ' h ' + Math.floor((secs % 3600) / 60) + ' min';
  }

  function utcMinute(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  function setFigure(id, value, text) {
    const element = document.getElementById(id);
    if (element) {
      element.setAttribute('data-value', String(value));
      element.textContent = text;
    }
  }

  function render(panel, status) {
    const state = status.state;
    panel.setAttribute('data-state', state);
    const message = document.getElementById('connection-message');
    let text = MESSAGES[state] || state;
    if (state === 'preparing' && typeof status.percent === 'number') {
      text = 'Preparing the connection: ' + status.percent + ' %' +
        (status.message ? ' (' + status.message + ')' : '');
    }
    if (state === 'connected' && typeof status.started_at === 'number') {
      text = 'Connected since ' + utcMinute(status.started_at) + '.';
    }
    if (message.textContent !== text) {
      message.textContent = text;
    }
    const progress = document.getElementById('progress');
    if (progress) {
      progress.hidden = state !== 'preparing';
      if (typeof status.percent === 'number') {
        progress.value = status.percent;
      }
    }
    document.getElementById('launch').hidden = !(state === 'waiting' || state === 'preparing');
    document.getElementById('figures').hidden = state !== 'ended';
    document.getElementById('launcher-help').hidden = !(state === 'expired' || state === 'failed');
    if (state === 'ended') {
      setFigure('bytes-sent', status.bytes_sent, bytes(status.bytes_sent));
      setFigure('bytes-received', status.bytes_received, bytes(status.bytes_received));
      setFigure('duration', status.duration_secs, duration(status.duration_secs));
    }
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
  }

  async function refreshRecent() {
    const table = document.getElementById('recent');
    if (!table) {
      return;
    }
    const response = await fetch('/api/connections', {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    });
    if (!response.ok) {
      return;
    }
    const connections = await response.json();
    const body = table.tBodies[0];
    while (body.firstChild) {
      body.removeChild(body.firstChild);
    }
    for (const connection of connections) {
      const row = document.createElement('tr');
      row.setAttribute('data-state', connection.state);
      cell(row, connection.service || '(removed service)');
      cell(row, utcMinute(connection.created_at));
      cell(row, connection.state);
      const ended = connection.state === 'ended';
      cell(row, ended ? bytes(connection.bytes_sent) : '—', 'number');
      cell(row, ended ? bytes(connection.bytes_received) : '—', 'number');
      cell(row, ended ? duration(connection.duration_secs) : '—', 'number');
      body.appendChild(row);
    }
    const empty = document.getElementById('recent-empty');
    if (empty) {
      empty.hidden = connections.length > 0;
    }
  }

  function sessionEnded() {
    const message = document.getElementById('connection-message');
    message.textContent = 'Your session has ended. ';
    const link = document.createElement('a');
    link.href = '/';
    link.textContent = 'Sign in again';
    message.appendChild(link);
  }

  async function poll(panel, url) {
    let response;
    try {
      response = await fetch(url, {
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
      });
    } catch (error) {
      // The broker is unreachable for a moment: try again.
      window.setTimeout(function () { poll(panel, url); }, POLL_MS * 3);
      return;
    }
    if (response.status === 401) {
      sessionEnded();
      return;
    }
    if (!response.ok) {
      window.setTimeout(function () { poll(panel, url); }, POLL_MS * 3);
      return;
    }
    const status = await response.json();
    render(panel, status);
    if (TERMINAL.indexOf(status.state) >= 0) {
      refreshRecent();
      return;
    }
    window.setTimeout(function () { poll(panel, url); }, POLL_MS);
  }

  // The admin page of live connections: the figures every 2 s; a reload when sessions
  // come or go (the rows hold forms).
  async function refreshLive(table) {
    let sessions;
    try {
      const response = await fetch(table.getAttribute('data-refresh-url'), {
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
      });
      if (!response.ok) {
        return;
      }
      sessions = await response.json();
    } catch (error) {
      return;
    }
    const rows = table.tBodies[0].rows;
    const shown = Array.from(rows).map(function (row) { return row.getAttribute('data-session'); });
    const now = sessions.map(function (session) { return session.session; });
    const states = {};
    for (const row of rows) {
      states[row.getAttribute('data-session')] = row.getAttribute('data-state');
    }
    const changed = shown.length !== now.length ||
      sessions.some(function (session) {
        return shown.indexOf(session.session) < 0 || states[session.session] !== session.state;
      });
    if (changed) {
      window.location.reload();
      return;
    }
    for (const session of sessions) {
      const row = table.querySelector('tr[data-session="' + session.session + '"]');
      if (!row) {
        continue;
      }
      const figure = function (className, value, text) {
        const element = row.querySelector('.' + className);
        if (element && value !== null && value !== undefined) {
          element.setAttribute('data-value', String(value));
          element.textContent = text;
        }
      };
      figure('sent', session.sent, bytes(session.sent));
      figure('recv', session.recv, bytes(session.recv));
      const secs = Math.floor((Date.now() - session.started_at) / 1000);
      figure('duration', Math.max(0, secs), duration(secs));
    }
  }

  function start() {
    const live = document.getElementById('live');
    if (live && live.getAttribute('data-refresh-url')) {
      window.setInterval(function () { refreshLive(live); }, 2000);
    }
    const panel = document.getElementById('connection');
    if (!panel) {
      return;
    }
    const url = panel.getAttribute('data-status-url');
    const link = document.getElementById('launch-link');
    if (panel.getAttribute('data-open') === 'true' && link) {
      panel.removeAttribute('data-open');
      // A reload must not post Connect again: the address becomes the services page.
      window.history.replaceState(null, '', '/');
      window.location.assign(link.href);
    }
    if (url) {
      poll(panel, url);
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
