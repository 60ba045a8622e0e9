// Live positions page: keeps the table current over the ws/positions/ WebSocket.
//
// - On every (re)connect it reads a fresh snapshot of the page's open links (the socket
//   joins its group before the snapshot is read, so nothing falls between the two; an
//   update that comes twice is dropped by `updated_at`).
// - Frames: {"type": "positions", "links": [...]} (the staff batch) and
//   {"type": "position", "link": {...}}; a link whose state is no longer open leaves.
// - When the socket drops, the page says since when its data may be stale and reconnects
//   by itself with a growing delay (1 s, 2 s, 4 s ... at most 15 s).
// - Prices and P&L are read every few seconds for the links shown (computed in Decimal
//   on the server); they go stale with the socket.
(function () {
  "use strict";
  const root = document.getElementById("live-positions");
  if (!root) return;
  const table = document.getElementById("live-table");
  const body = table.querySelector("tbody");
  const status = document.getElementById("live-status");
  const count = document.getElementById("live-count");
  const dataUrl = root.dataset.dataUrl;
  const pricesUrl = root.dataset.pricesUrl;
  const scope = root.dataset.scope;
  let subscriptions = new Set(
    (root.dataset.subscriptions || "").split(",").filter(Boolean).map(Number)
  );
  const OPEN = new Set(["opening", "pending", "open"]);
  const rows = new Map(); // link id -> {tr, link}
  let socket = null;
  let retry = 0;
  let staleSince = null;

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function setStatus(state, label) {
    status.dataset.state = state;
    status.className = "bo-status bo-status-" + state;
    status.textContent = label;
    table.classList.toggle("bo-stale", state === "stale");
  }

  function inScope(link) {
    return scope === "all" || subscriptions.has(link.subscription_id);
  }

  function cells(link) {
    return [
      link.id, link.strategy || "", "#" + link.master_login, link.master_position_id,
      "#" + link.follower_login, link.follower_position_id, link.follower_symbol, link.side,
      link.follower_volume, text(link.open_price), null, null, link.state,
      link.sync_status || "", null,
    ];
  }

  function render(tr, link) {
    const values = cells(link);
    tr.textContent = "";
    values.forEach(function (value, i) {
      const td = document.createElement("td");
      if (i === 10) td.className = "price";
      else if (i === 11) td.className = "pnl";
      else if (i === 14) {
        const a = document.createElement("a");
        a.href = root.dataset.lineageBase + link.id + "/";
        a.textContent = "lineage";
        td.appendChild(a);
      } else td.textContent = text(value);
      tr.appendChild(td);
    });
    tr.dataset.link = link.id;
    tr.dataset.updated = link.updated_at || "";
  }

  function upsert(link) {
    if (!inScope(link)) return;
    const known = rows.get(link.id);
    if (known && known.link.updated_at && link.updated_at && link.updated_at < known.link.updated_at) {
      return; // an older update than the one shown (pushes from two workers may cross)
    }
    if (!OPEN.has(link.state)) {
      if (known) {
        known.tr.remove();
        rows.delete(link.id);
      }
      count.textContent = rows.size;
      return;
    }
    let tr = known ? known.tr : document.createElement("tr");
    const keep = known ? [known.tr.querySelector(".price"), known.tr.querySelector(".pnl")] : null;
    render(tr, Object.assign({}, known ? known.link : {}, link));
    if (keep) {
      tr.querySelector(".price").textContent = keep[0].textContent;
      tr.querySelector(".pnl").textContent = keep[1].textContent;
      tr.querySelector(".pnl").className = keep[1].className;
    }
    if (!known) {
      tr.classList.add("bo-new");
      body.insertBefore(tr, body.firstChild);
      // A pushed link carries no strategy or sync status: read them with the next snapshot.
      if (!link.strategy) refreshSoon();
    }
    rows.set(link.id, { tr: tr, link: Object.assign({}, known ? known.link : {}, link) });
    count.textContent = rows.size;
  }

  function replaceAll(links) {
    body.textContent = "";
    rows.clear();
    links.slice().reverse().forEach(upsert);
    body.querySelectorAll("tr.bo-new").forEach(function (tr) { tr.classList.remove("bo-new"); });
  }

  // Rows rendered by the server, so the page works before the socket opens.
  body.querySelectorAll("tr[data-link]").forEach(function (tr) {
    const cellsText = Array.from(tr.children).map(function (td) { return td.textContent; });
    rows.set(Number(tr.dataset.link), {
      tr: tr,
      link: { id: Number(tr.dataset.link), updated_at: tr.dataset.updated, state: cellsText[12] },
    });
  });

  let refreshTimer = null;
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = window.setTimeout(function () {
      refreshTimer = null;
      if (status.dataset.state === "live") snapshot().catch(function () {});
    }, 1500);
  }

  function snapshot() {
    return fetch(dataUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("snapshot " + r.status);
        return r.json();
      })
      .then(function (data) {
        if (scope !== "all") subscriptions = new Set(data.subscription_ids);
        replaceAll(data.links);
      });
  }

  function connect() {
    const proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    setStatus(staleSince ? "stale" : "connecting", staleSince ? staleLabel() : "Connecting…");
    socket = new WebSocket(proto + window.location.host + "/ws/positions/");
    socket.onopen = function () {
      snapshot()
        .then(function () {
          retry = 0;
          staleSince = null;
          setStatus("live", "Live");
          prices();
          watch();
        })
        .catch(function () {
          socket.close();
        });
    };
    socket.onmessage = function (event) {
      const frame = JSON.parse(event.data);
      if (frame.type === "positions") frame.links.forEach(upsert);
      else if (frame.type === "position") upsert(frame.link);
      else if (frame.type === "prices") applyPrices(frame.prices);
      // "snapshot": this page reads its own, scoped snapshot on open (above).
    };
    socket.onclose = function () {
      socket = null;
      watched = "";
      if (!staleSince) staleSince = new Date();
      setStatus("stale", staleLabel());
      const delay = Math.min(1000 * Math.pow(2, retry), 15000);
      retry += 1;
      window.setTimeout(connect, delay);
    };
  }

  function staleLabel() {
    return "Disconnected, reconnecting — data may be stale since " + staleSince.toLocaleTimeString();
  }

  function applyPrices(prices) {
    Object.keys(prices).forEach(function (id) {
      const row = rows.get(Number(id));
      if (!row) return;
      const p = prices[id];
      row.tr.querySelector(".price").textContent = text(p.price);
      const pnl = row.tr.querySelector(".pnl");
      pnl.textContent = text(p.pnl);
      pnl.className = "pnl " + (p.pnl && p.pnl.startsWith("-") ? "pnl-neg" : "pnl-pos");
    });
  }

  // Prices arrive over the socket every second for the links this page shows; one HTTP
  // read right after a (re)connect fills the figures at once.
  let watched = "";
  function watch() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const ids = Array.from(rows.keys()).slice(0, 500);
    const key = ids.join(",");
    if (key === watched) return;
    watched = key;
    socket.send(JSON.stringify({ type: "watch_prices", links: ids }));
  }

  function prices() {
    if (status.dataset.state !== "live" || rows.size === 0) return;
    const ids = Array.from(rows.keys()).slice(0, 500).join(",");
    fetch(pricesUrl + "?links=" + ids, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { prices: {} }; })
      .then(function (data) { applyPrices(data.prices); })
      .catch(function () {});
  }

  window.setInterval(watch, 1000);
  connect();
})();
