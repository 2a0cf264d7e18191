"use strict";
// The projector dashboard: polls /api/dashboard twice a second and redraws what
// changed. Everything shown is set as text, never as HTML: names and lab fields come
// from clients.
(function () {
  const POLL_MS = 500;
  const MAX_LAB_ROWS = 200;

  // The token comes in the page's address once; it is kept for this tab and taken out
  // of the address bar, which the whole room can read.
  const params = new URLSearchParams(location.search);
  let token = params.get("token");
  try {
    if (token) {
      sessionStorage.setItem("switchboard-admin-token", token);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    } else {
      token = sessionStorage.getItem("switchboard-admin-token");
    }
  } catch (e) {
    // Storage may be off; the token in memory still serves this page.
  }

  const $ = (id) => document.getElementById(id);
  let labAfter = 0;
  let labCount = 0;
  let lastClients = "";
  let lastRooms = "";
  let rate = { per_second: [], current: 0, messages_total: 0 };

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    td.title = td.textContent;
    if (cls) td.className = cls;
    return td;
  }

  function time(rfc3339) {
    const d = new Date(rfc3339);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
  }

  function status(text, bad) {
    const el = $("status");
    el.textContent = text;
    el.className = bad ? "status bad" : "status";
  }

  function showClients(data) {
    const key = JSON.stringify(data.clients);
    if (key === lastClients) return;
    lastClients = key;
    // Newest first: on a full screen, the students who just connected are the ones
    // looking for themselves.
    const rows = data.clients.slice().reverse().map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.clientId = c.client_id;
      tr.append(
        cell("#" + c.client_id, "id"),
        c.name != null ? cell(c.name)
          : c.sent_name != null ? cell(c.sent_name, "sent")
          : cell("–", "dim"),
        cell(c.dialect, "dialect-" + c.dialect),
        cell(c.peer, "dim"),
        cell(time(c.since), "dim"),
      );
      return tr;
    });
    $("clients-rows").replaceChildren(...rows);
    fit("clients");
    $("count-clients").textContent = data.clients_total;
    $("clients-note").textContent =
      data.clients_total > data.clients.length ? "first " + data.clients.length + " shown" : "";
  }

  function showRooms(data) {
    const key = JSON.stringify(data.rooms);
    if (key === lastRooms) return;
    lastRooms = key;
    const rows = data.rooms.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.room = r.room;
      const more = r.member_count > r.members.length ? " +" + (r.member_count - r.members.length) : "";
      tr.append(cell(r.room, "id"), cell(r.owner == null ? "–" : r.owner), cell(r.members.join(", ") + more, "other"));
      return tr;
    });
    $("rooms-rows").replaceChildren(...rows);
    fit("rooms");
    $("count-rooms").textContent = data.rooms_total;
    $("rooms-note").textContent =
      data.rooms_total > data.rooms.length ? "first " + data.rooms.length + " shown" : "";
  }

  function showLab(lab) {
    const body = $("lab-rows");
    for (const s of lab.submissions) {
      const k = s.known || {};
      const other = s.other.map(([key, value]) => key + "=" + value);
      if (s.fields.length === 0) other.push(s.summary);
      const tr = document.createElement("tr");
      tr.dataset.clientId = s.client_id;
      tr.dataset.seq = s.seq;
      tr.className = "fresh";
      tr.append(
        cell(time(s.at), "dim"),
        cell("#" + s.client_id, "id"),
        cell(k.name != null ? k.name : s.name != null ? s.name : ""),
        cell(k.email),
        cell(k.student_id),
        cell(k.github),
        cell(other.join("  "), "other"),
      );
      body.prepend(tr);
      labCount += 1;
    }
    while (body.children.length > MAX_LAB_ROWS) body.lastChild.remove();
    if (lab.submissions.length) fit("lab");
    labAfter = lab.last;
    $("count-lab").textContent = labCount;
  }

  // Shrinks a panel's table type, down to a floor still readable from the back, until
  // its rows fit; the rows past the bottom (the oldest) are then cut off.
  function fit(id) {
    const rows = $(id).querySelector(".rows");
    const table = rows.querySelector("table");
    let size = 1;
    table.style.fontSize = "1em";
    while (rows.scrollHeight > rows.clientHeight && size > 0.8) {
      size -= 0.05;
      table.style.fontSize = size + "em";
    }
  }

  function drawRate() {
    const canvas = $("rate-plot");
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.floor(canvas.clientWidth * ratio));
    const h = Math.max(1, Math.floor(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const g = canvas.getContext("2d");
    g.fillStyle = "#000";
    g.fillRect(0, 0, w, h);
    const seconds = 300;
    const values = rate.per_second.slice(-(seconds - 1)).concat([rate.current]);
    const max = Math.max(1, ...values);
    const label = 14 * ratio;
    const top = label * 1.4;
    const plotH = h - top - 2;
    g.strokeStyle = "#333";
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, top + 0.5);
    g.lineTo(w, top + 0.5);
    g.stroke();
    const step = w / seconds;
    const x0 = w - values.length * step;
    g.fillStyle = "#7fdbff";
    values.forEach((v, i) => {
      const bar = (v / max) * plotH;
      g.fillRect(x0 + i * step, h - bar, Math.max(1, step - ratio * 0.5), bar);
    });
    g.fillStyle = "#bbb";
    g.font = label + "px sans-serif";
    g.textBaseline = "top";
    g.fillText("max " + max + "/s", 4 * ratio, 2 * ratio);
    $("rate-now").textContent = rate.per_second.length ? rate.per_second[rate.per_second.length - 1] : rate.current;
    $("rate-total").textContent = rate.messages_total + " messages";
  }

  async function poll() {
    try {
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const response = await fetch("/api/dashboard?after=" + labAfter, { headers, cache: "no-store" });
      if (response.status === 401) {
        status("needs the admin token: open the URL the server printed", true);
      } else if (!response.ok) {
        status("server answered " + response.status, true);
      } else {
        const data = await response.json();
        if (data.lab.last < labAfter) {
          // The server restarted: its submissions are numbered anew.
          $("lab-rows").replaceChildren();
          labCount = 0;
          labAfter = 0;
        }
        showClients(data);
        showRooms(data);
        showLab(data.lab);
        rate = data.rate;
        drawRate();
        status("live " + time(data.now), false);
      }
    } catch (e) {
      status("server unreachable, retrying", true);
    }
    setTimeout(poll, POLL_MS);
  }

  window.addEventListener("resize", () => {
    ["clients", "lab", "rooms"].forEach(fit);
    drawRate();
  });
  poll();
})();
