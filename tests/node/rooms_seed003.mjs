// Seed 003's Socket.IO examples, driven by tests/test_rooms_live.py: every client is made exactly as
// the seed shows (io(url, {auth: {apiKey}}), "connect", "message", "error", "connect_error").
// Input (env ROOMS_PLAN, JSON): {scenario, clients: [{name, url, apiKey}], ...}. Output: one JSON
// line per client event on stdout, then {"done": true, report}. Exit code 1 on a timeout.
import { io } from "socket.io-client";

const plan = JSON.parse(process.env.ROOMS_PLAN);
const out = (line) => console.log(JSON.stringify(line));
const timer = setTimeout(() => { out({ timeout: true }); process.exit(1); }, plan.timeoutMs ?? 30000);

function open({ name, url, apiKey }) {
  const state = { name, received: [], errors: [], socket: null, waiters: [] };
  state.ready = new Promise((resolve) => {
    const auth = apiKey === null ? {} : { apiKey };
    const socket = io(url, { auth, reconnection: false });
    state.socket = socket;
    socket.on("connect", () => { out({ name, event: "connect" }); resolve(true); });
    socket.on("connect_error", (err) => {
      out({ name, event: "connect_error", message: err.message, data: err.data ?? null });
      resolve(false);
    });
    state.gone = new Promise((gone) => socket.on("disconnect", (reason) => {
      out({ name, event: "disconnect", reason });
      gone(reason);
    }));
    socket.on("message", (data) => { state.received.push(data); wake(state); });
    socket.on("error", (err) => { out({ name, event: "error", error: err }); state.errors.push(err); wake(state); });
  });
  return state;
}

function wake(state) {
  state.waiters = state.waiters.filter((check) => !check());
}

// Resolves once predicate() holds, re-checked on every message or error the client receives.
function until(state, predicate) {
  return new Promise((resolve) => {
    const check = () => { if (predicate()) { resolve(); return true; } return false; };
    if (!check()) state.waiters.push(check);
  });
}

const clients = Object.fromEntries(plan.clients.map((c) => [c.name, open(c)]));
const connected = Object.fromEntries(
  await Promise.all(Object.values(clients).map(async (c) => [c.name, await c.ready])));
const report = { connected };

if (plan.scenario === "broadcast") {
  // Phase 1: the senders speak; wait until every receiver heard every sender.
  const hello = plan.senders.map((name) => `hello from ${name}`);
  for (const name of plan.senders) clients[name].socket.emit("message", `hello from ${name}`);
  await Promise.all(plan.receivers.map((name) =>
    until(clients[name], () => hello.every((m) => clients[name].received.includes(m)))));
  // Phase 2: each isolated client hears its own echo. Had it been in the senders' room, their
  // messages (published earlier on the same bus) would have reached it before its echo.
  await Promise.all(plan.isolated.map((name) => {
    clients[name].socket.emit("message", `echo ${name}`);
    return until(clients[name], () => clients[name].received.includes(`echo ${name}`));
  }));
} else if (plan.scenario === "limits") {
  const c = clients[plan.clients[0].name];
  // A message over the size limit: an error, and nothing broadcast.
  c.socket.emit("message", "x".repeat(plan.oversize));
  await until(c, () => c.errors.length >= 1);
  // Then a burst beyond the rate limit: every message is either broadcast back or refused.
  for (let n = 0; n < plan.burst; n++) c.socket.emit("message", `m${n}`);
  await until(c, () => c.received.length + c.errors.length - 1 >= plan.burst);
} else if (plan.scenario === "send") {
  // plan.count messages, each broadcast back to the sender; then, with plan.linger, stay connected
  // until the server disconnects (a budget's close).
  const c = clients[plan.clients[0].name];
  for (let n = 0; n < plan.count; n++) c.socket.emit("message", `m${n}`);
  await until(c, () => c.received.length + c.errors.length >= plan.count);
  if (plan.linger) await c.gone;
} else if (plan.scenario === "revoke") {
  // The test revokes the key once it sees "connect"; the seed's disconnect handler then fires.
  await clients[plan.clients[0].name].gone;
}

for (const c of Object.values(clients)) {
  report[c.name] = { received: c.received, errors: c.errors };
  c.socket.close();
}
out({ done: true, report });
clearTimeout(timer);
