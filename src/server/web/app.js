// switchboard's browser client. It speaks the native protocol over the WebSocket at
// /ws (one JSON object per message), so it shares the hub with every other client.
// Nothing it shows is lost or shown twice after a cut: room messages are kept by their
// `seq` and the page resumes with the last `seq` it displayed; mail is peeked, shown,
// then acknowledged.
import { Link, ServerError } from './link.js';
import { $, clock, element, setStatus, trim } from './view.js';

/** Reconnect backoff: the first wait, the longest one, and when to give up. */
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10000;
const RECONNECT_GIVE_UP_MS = 120000;
/** Messages shown from a room's history when joining it. */
const HISTORY_SHOWN = 20;
/** Lines kept on screen per list, so that a busy room cannot grow the page forever. */
const ROOM_LINES_KEPT = 500;
const LIST_LINES_KEPT = 200;
/** Pages of mail read in one go (100 messages each). */
const INBOX_PAGES = 10;
const USERS_REFRESH_MS = 5000;

/**
 * What the page knows. A room: {epoch, last (highest seq shown), floor (highest seq
 * trimmed off the screen), owner, seqs (those on screen), log, tab}.
 */
const state = {
  link: null,
  name: null,
  password: undefined,
  token: undefined,
  rooms: new Map(),
  current: null,
  unread: 0,
  mailShown: new Set(),
  cutAt: null,
  backoff: RECONNECT_FIRST_MS,
  usersTimer: null,
  usersShown: null,
};

/** One line in the activity list (and so read out by screen readers). */
function activity(text) {
  const list = $('activity');
  list.append(element('li', '', `${clock()} ${text}`));
  trim(list, LIST_LINES_KEPT);
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

function guestName() {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return 'guest-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function newLink() {
  return new Link(onEvent, onLinkClosed);
}

/** A request on the current connection; while there is none, it fails at once. */
function call(op, args) {
  if (!state.link) {
    return Promise.reject(new ServerError({ code: 'closed', message: 'not connected (reconnecting)' }));
  }
  return state.link.request(op, args);
}

/** Runs a request and shows its failure in the activity list instead of throwing. */
async function attempt(what, action) {
  try {
    return await action();
  } catch (error) {
    activity(`${what} failed: ${error.message}`);
    return undefined;
  }
}

// ---- Logging in ------------------------------------------------------------------

function showPassword(message) {
  $('password-row').hidden = false;
  $('login-error').textContent = message;
  $('password').focus();
}

async function login(event) {
  event.preventDefault();
  const name = $('name').value.trim() || guestName();
  const password = ($('password-row').hidden ? '' : $('password').value) || undefined;
  $('login-error').textContent = '';
  $('enter').disabled = true;
  try {
    if (!state.link) {
      const link = newLink();
      await link.open(wsUrl());
      state.link = link;
    }
    const reply = await call('hello', { name, password });
    state.name = reply.name;
    state.password = password;
    state.token = reply.resume_token;
    enterChat();
  } catch (error) {
    if (error.code === 'auth_failed') {
      showPassword(`${error.message}: enter the password for ${name}.`);
    } else {
      $('login-error').textContent = error.code === 'closed' ? 'Cannot reach the server.' : error.message;
      $('name').focus();
    }
  } finally {
    $('enter').disabled = false;
  }
}

function enterChat() {
  $('login').hidden = true;
  $('chat').hidden = false;
  $('me').hidden = false;
  $('logout').hidden = false;
  $('me').textContent = `You are ${state.name}`;
  $('password').value = '';
  setStatus('Connected');
  activity(`You are in as ${state.name}.`);
  $('room-name').focus();
  refreshUsers();
  refreshBadge();
  state.usersTimer = setInterval(refreshUsers, USERS_REFRESH_MS);
}

/** Says bye, forgets everything and shows the name field again. */
async function logout() {
  const link = state.link;
  state.link = null;
  if (link) {
    await link.request('bye').catch(() => {});
    link.close();
  }
  clearInterval(state.usersTimer);
  for (const room of [...state.rooms.keys()]) removeRoom(room);
  Object.assign(state, { name: null, password: undefined, token: undefined, unread: 0, cutAt: null, usersShown: null });
  $('password-row').hidden = true;
  state.mailShown.clear();
  for (const id of ['inbox', 'users', 'activity', 'user-names']) $(id).replaceChildren();
  showBadge();
  $('chat').hidden = true;
  $('me').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  setStatus('Not connected');
  $('name').focus();
}

// ---- Who is online ---------------------------------------------------------------

async function refreshUsers() {
  if (!state.link) return;
  const reply = await call('users').catch(() => undefined);
  if (!reply) return;
  // Rebuilt only when it changed, so that a focused button is not taken away.
  const key = reply.users.map((user) => user.name).join('\n');
  if (key === state.usersShown) return;
  state.usersShown = key;
  const list = $('users');
  const names = $('user-names');
  list.replaceChildren();
  names.replaceChildren();
  for (const user of reply.users) {
    const item = element('li');
    if (user.name === state.name) {
      item.textContent = `${user.name} (you)`;
    } else {
      const write = element('button', 'link', user.name);
      write.type = 'button';
      write.setAttribute('aria-label', `Write to ${user.name}`);
      write.addEventListener('click', () => {
        $('dm-to').value = user.name;
        $('dm-text').focus();
      });
      item.append(write);
    }
    list.append(item);
    const option = element('option');
    option.value = user.name;
    names.append(option);
  }
}

// ---- Direct messages -------------------------------------------------------------

function showBadge() {
  const badge = $('badge');
  badge.hidden = state.unread === 0;
  badge.textContent = `${state.unread} new`;
}

/** Counts unread mail without reading it. */
async function refreshBadge() {
  if (!state.link) return;
  const page = await call('inbox', { peek: true, limit: 100 }).catch(() => undefined);
  if (!page) return;
  state.unread = page.messages.filter((m) => !state.mailShown.has(m.message_id)).length;
  showBadge();
}

function showMail(message) {
  if (state.mailShown.has(message.message_id)) return;
  state.mailShown.add(message.message_id);
  const item = element('li', 'mail');
  item.dataset.messageId = message.message_id;
  item.append(
    element('span', 'from', message.from),
    element('time', 'when', clock(message.sent_at)),
    element('span', 'text', message.text),
  );
  $('inbox').append(item);
  trim($('inbox'), LIST_LINES_KEPT);
}

/** Peeks a page, shows it, then acknowledges it: a cut in between loses nothing. */
async function readInbox() {
  for (let page = 0; page < INBOX_PAGES; page++) {
    const reply = await call('inbox', { peek: true, limit: 100 });
    reply.messages.forEach(showMail);
    const last = reply.messages.at(-1);
    if (last) await call('ack', { up_to: last.message_id });
    if (!reply.more) break;
  }
  state.unread = 0;
  showBadge();
}

async function sendMail(event) {
  event.preventDefault();
  const to = $('dm-to').value.trim();
  const text = $('dm-text').value;
  if (!to || !text) return;
  const sent = await attempt(`Sending to ${to}`, () => call('send', { to, text }));
  if (sent) {
    activity(`Sent to ${to}: ${text}`);
    $('dm-text').value = '';
  }
  $('dm-text').focus();
}

// ---- Rooms -----------------------------------------------------------------------

function addRoom(name, epoch, owner) {
  const existing = state.rooms.get(name);
  if (existing) return existing;
  const log = element('ol', 'room-log');
  log.dataset.room = name;
  log.setAttribute('aria-label', `Messages in ${name}`);
  log.setAttribute('aria-live', 'polite');
  log.hidden = true;
  $('room-logs').append(log);
  const tab = element('button', 'tab', name);
  tab.type = 'button';
  tab.dataset.room = name;
  tab.addEventListener('click', () => selectRoom(name, true));
  const item = element('li');
  item.append(tab);
  $('room-list').append(item);
  const room = { epoch, last: 0, floor: 0, owner, seqs: new Set(), log, tab };
  state.rooms.set(name, room);
  return room;
}

function removeRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  room.log.remove();
  room.tab.parentElement.remove();
  state.rooms.delete(name);
  if (state.current === name) {
    state.current = null;
    const next = state.rooms.keys().next();
    if (next.done) $('room-panel').hidden = true;
    else selectRoom(next.value, false);
  }
}

function selectRoom(name, focus) {
  const room = state.rooms.get(name);
  if (!room) return;
  state.current = name;
  for (const [other, each] of state.rooms) {
    each.log.hidden = other !== name;
    each.tab.setAttribute('aria-pressed', String(other === name));
  }
  room.tab.classList.remove('unseen');
  $('room-panel').hidden = false;
  $('room-title').textContent = name;
  $('room-close').hidden = !room.owner;
  room.log.scrollTop = room.log.scrollHeight;
  if (focus) $('say-text').focus();
}

/** Shows a room message once, in `seq` order, wherever it arrives from. */
function showRoomMessage(name, message) {
  const room = state.rooms.get(name);
  if (!room || !message.seq || message.seq <= room.floor || room.seqs.has(message.seq)) return;
  room.seqs.add(message.seq);
  room.last = Math.max(room.last, message.seq);
  const item = element('li', message.from === state.name ? 'said mine' : 'said');
  item.dataset.seq = message.seq;
  item.append(
    element('time', 'when', clock(message.sent_at)),
    element('span', 'from', message.from),
    element('span', 'text', message.text),
  );
  room.log.insertBefore(item, firstAfter(room.log, message.seq));
  trimRoom(room);
  room.log.scrollTop = room.log.scrollHeight;
  if (state.current !== name) room.tab.classList.add('unseen');
}

/** The first message line with a greater `seq`, searched from the end (where most go). */
function firstAfter(log, seq) {
  let after = null;
  for (let li = log.lastElementChild; li; li = li.previousElementSibling) {
    if (!li.dataset.seq) continue;
    if (Number(li.dataset.seq) < seq) break;
    after = li;
  }
  return after;
}

/** Keeps a room's log to its last lines; what scrolls off is never shown again. */
function trimRoom(room) {
  while (room.log.children.length > ROOM_LINES_KEPT) {
    const first = room.log.firstElementChild;
    const seq = Number(first.dataset.seq || 0);
    if (seq) {
      room.seqs.delete(seq);
      room.floor = Math.max(room.floor, seq);
    }
    first.remove();
  }
}

function roomNotice(name, text) {
  const room = state.rooms.get(name);
  if (!room) return;
  room.log.append(element('li', 'notice', text));
  trimRoom(room);
}

/** Shows the newest page of a room's history (after a join, or a gap after a cut). */
async function showHistory(name, before) {
  const args = { room: name, limit: HISTORY_SHOWN };
  if (before) args.before = before;
  const page = await call('history', args).catch(() => undefined);
  if (page) page.messages.forEach((m) => showRoomMessage(name, m));
}

async function joinRoom(event) {
  event.preventDefault();
  const name = $('room-name').value.trim();
  if (!name) return;
  if (state.rooms.has(name)) {
    selectRoom(name, true);
    return;
  }
  const reply = await attempt(`Joining ${name}`, () => call('join_room', { room: name }));
  if (!reply) return;
  addRoom(name, reply.epoch, false);
  roomNotice(name, `You joined ${name}. Here: ${reply.members.join(', ')}.`);
  selectRoom(name, true);
  $('room-name').value = '';
  if (reply.seq > 0) await showHistory(name, reply.seq + 1);
}

async function createRoom() {
  const name = $('room-name').value.trim();
  if (!name) {
    $('room-name').focus();
    return;
  }
  const reply = await attempt(`Creating ${name}`, () => call('create_room', { room: name }));
  if (!reply) return;
  addRoom(name, reply.epoch, true);
  roomNotice(name, `You created ${name}; you own it.`);
  selectRoom(name, true);
  $('room-name').value = '';
}

async function say(event) {
  event.preventDefault();
  const name = state.current;
  const text = $('say-text').value;
  if (!name || !text) return;
  const reply = await attempt(`Saying in ${name}`, () => call('say', { room: name, text }));
  if (reply) {
    showRoomMessage(name, { seq: reply.seq, from: state.name, text });
    $('say-text').value = '';
  }
}

async function leaveRoom() {
  const name = state.current;
  if (!name) return;
  const left = await attempt(`Leaving ${name}`, () => call('leave_room', { room: name }));
  if (!left) return;
  removeRoom(name);
  activity(`You left ${name}.`);
  $('room-name').focus();
}

async function closeRoom() {
  const name = state.current;
  if (!name) return;
  const closed = await attempt(`Closing ${name}`, () => call('close_room', { room: name }));
  if (!closed) return;
  removeRoom(name);
  activity(`You closed ${name}.`);
  $('room-name').focus();
}

// ---- Events ----------------------------------------------------------------------

function onEvent(event) {
  switch (event.event) {
    case 'room_message':
      showRoomMessage(event.room, event);
      break;
    case 'message':
      state.unread += 1;
      showBadge();
      activity(`New mail from ${event.from}.`);
      break;
    case 'joined':
      roomNotice(event.room, `${event.name} joined.`);
      refreshUsers();
      break;
    case 'left':
      roomNotice(event.room, `${event.name} left.`);
      break;
    case 'room_closed':
      if (state.rooms.has(event.room)) {
        removeRoom(event.room);
        if (event.by !== state.name) activity(`${event.room} was closed by ${event.by}.`);
      }
      break;
    case 'resume_gap':
      roomNotice(event.room, `Some messages of ${event.room} are no longer kept; the latest are shown.`);
      showHistory(event.room);
      break;
    case 'shutdown':
      activity(`The server is stopping (${event.reason}).`);
      break;
    case 'error':
      activity(`Server: ${event.message}`);
      break;
    default:
      break;
  }
}

// ---- Reconnecting ----------------------------------------------------------------

function onLinkClosed(link) {
  if (link !== state.link) return;
  state.link = null;
  if (!state.name) {
    setStatus('Not connected');
    return;
  }
  if (state.cutAt === null) {
    state.cutAt = Date.now();
    state.backoff = RECONNECT_FIRST_MS;
    activity('The connection was cut; reconnecting.');
  }
  setStatus('Reconnecting…');
  scheduleReconnect();
}

function scheduleReconnect() {
  if (Date.now() - state.cutAt > RECONNECT_GIVE_UP_MS) {
    setStatus('Disconnected');
    activity('Could not reconnect for 2 minutes; reload the page to try again.');
    return;
  }
  const wait = state.backoff * (0.75 + Math.random() * 0.5);
  state.backoff = Math.min(state.backoff * 2, RECONNECT_MAX_MS);
  setTimeout(reconnect, wait);
}

async function reconnect() {
  if (!state.name || state.link) return;
  const link = newLink();
  try {
    await link.open(wsUrl());
  } catch {
    scheduleReconnect();
    return;
  }
  state.link = link;
  try {
    await resume(link);
  } catch (error) {
    if (error.code === 'closed') return; // onLinkClosed schedules the next try
    activity(`Could not get back in: ${error.message}`);
    link.close();
    state.link = null;
    setStatus('Disconnected');
  }
}

/** Takes the parked session back with the token; the server replays what we missed. */
async function resume(link) {
  const seen = {};
  for (const [name, room] of state.rooms) seen[name] = room.last;
  const reply = await link.request('hello', {
    name: state.name,
    password: state.password,
    resume: state.token,
    seen,
  });
  state.token = reply.resume_token;
  state.cutAt = null;
  setStatus('Connected');
  if (reply.resumed) {
    const kept = new Set((reply.rooms || []).map((position) => position.room));
    for (const name of [...state.rooms.keys()]) {
      if (!kept.has(name)) {
        removeRoom(name);
        activity(`${name} is gone.`);
      }
    }
    activity('Reconnected; nothing was lost.');
  } else {
    activity('Reconnected as a new session.');
    await rejoinRooms();
  }
  refreshUsers();
  refreshBadge();
}

/** After a resume that failed: joins each room again after the last message shown. */
async function rejoinRooms() {
  for (const [name, room] of [...state.rooms]) {
    let reply;
    try {
      reply = await call('join_room', { room: name, after: room.last, epoch: room.epoch });
    } catch (error) {
      if (error.code === 'closed') throw error;
      removeRoom(name);
      activity(`${name} is gone (${error.message}).`);
      continue;
    }
    room.owner = false;
    if (state.current === name) $('room-close').hidden = true;
    if (reply.epoch !== room.epoch) {
      room.epoch = reply.epoch;
      room.seqs.clear();
      room.last = 0;
      room.floor = 0;
      room.log.replaceChildren();
      roomNotice(name, `${name} was made anew; its earlier messages are gone.`);
      await showHistory(name);
    } else if (reply.recovered === false) {
      roomNotice(name, `Some messages of ${name} are no longer kept; the latest are shown.`);
      await showHistory(name);
    }
  }
}

// ---- Wiring ----------------------------------------------------------------------

function start() {
  $('login-form').addEventListener('submit', login);
  // A password is asked for the name that needs it: another name starts without one.
  $('name').addEventListener('input', () => {
    $('password-row').hidden = true;
    $('password').value = '';
  });
  $('logout').addEventListener('click', logout);
  $('users-refresh').addEventListener('click', refreshUsers);
  $('dm-form').addEventListener('submit', sendMail);
  $('inbox-read').addEventListener('click', () => attempt('Reading the inbox', readInbox));
  $('room-form').addEventListener('submit', joinRoom);
  $('room-create').addEventListener('click', createRoom);
  $('say-form').addEventListener('submit', say);
  $('room-leave').addEventListener('click', leaveRoom);
  $('room-close').addEventListener('click', closeRoom);
  $('name').focus();
}

start();
