// Drives the real pusher-js (client/node_modules) for tests/test_pusher_js.py.
//
// Usage: node pusher_driver.js <host> <port> <key> <auth base URL>
// Reads commands from stdin, one JSON object a line:
//   {"do": "subscribe", "channel": "c"}        {"do": "unsubscribe", "channel": "c"}
//   {"do": "trigger", "channel": "c", "event": "client-x", "data": {...}}
//   {"do": "signin"}                            {"do": "disconnect"}
// and writes what pusher-js reports to stdout, one JSON object a line:
//   {"on": "state", "current": "connected", "socket_id": "1.2"}
//   {"on": "subscribed", "channel": "c", "members": {"count": n, "me": ..., "ids": [...]}}
//   {"on": "subscription_error", "channel": "c", "status": 401}
//   {"on": "event", "channel": "c", "event": "e", "data": ..., "user_id": ...}
//   {"on": "member_added" | "member_removed", "channel": "c", "id": "1", "info": ...}
//   {"on": "error", "code": 4001}   {"on": "signed_in", "user": {...}}
//   {"on": "user_event", "event": "e", "data": ...}  (to the signed-in user)
"use strict";

const readline = require("readline");
const Pusher = require("pusher-js");

const [host, port, key, authBase] = process.argv.slice(2);

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const pusher = new Pusher(key, {
  cluster: "unused",
  wsHost: host,
  wsPort: Number(port),
  forceTLS: false,
  enabledTransports: ["ws"],
  disableStats: true,
  channelAuthorization: { endpoint: authBase + "/auth", transport: "ajax" },
  userAuthentication: { endpoint: authBase + "/signin", transport: "ajax" },
});

pusher.connection.bind("state_change", (states) => {
  out({ on: "state", current: states.current, socket_id: pusher.connection.socket_id });
});
pusher.connection.bind("error", (error) => {
  // A pusher:error during the handshake comes wrapped in a HandshakeError.
  const data = (error && (error.data || (error.error && error.error.data))) || {};
  out({ on: "error", code: data.code === undefined ? null : data.code, message: data.message });
});

function members(channel) {
  if (!channel.members) return undefined;
  const ids = [];
  const hash = {};
  channel.members.each((member) => {
    ids.push(member.id);
    hash[member.id] = member.info === undefined ? null : member.info;
  });
  return { count: channel.members.count, me: channel.members.me, ids: ids.sort(), hash };
}

function subscribe(name) {
  const channel = pusher.subscribe(name);
  channel.bind("pusher:subscription_succeeded", () => {
    out({ on: "subscribed", channel: name, members: members(channel) });
  });
  channel.bind("pusher:subscription_error", (error) => {
    out({ on: "subscription_error", channel: name, status: error && error.status });
  });
  channel.bind("pusher:member_added", (member) => {
    out({ on: "member_added", channel: name, id: member.id, info: member.info });
  });
  channel.bind("pusher:member_removed", (member) => {
    out({ on: "member_removed", channel: name, id: member.id });
  });
  channel.bind_global((event, data, metadata) => {
    if (event.startsWith("pusher:") || event.startsWith("pusher_internal:")) return;
    out({ on: "event", channel: name, event, data, user_id: metadata && metadata.user_id });
  });
}

const commands = {
  subscribe: (command) => subscribe(command.channel),
  unsubscribe: (command) => pusher.unsubscribe(command.channel),
  trigger: (command) => {
    const sent = pusher.channel(command.channel).trigger(command.event, command.data);
    out({ on: "triggered", sent });
  },
  signin: () => {
    pusher.user.bind_global((event, data) => out({ on: "user_event", event, data }));
    pusher.signin();
    pusher.user.signinDonePromise.then(() => {
      out({ on: "signed_in", user: pusher.user.user_data });
    });
  },
  disconnect: () => pusher.disconnect(),
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  commands[command.do](command);
});
process.stdin.on("end", () => {
  pusher.disconnect();
  setTimeout(() => process.exit(0), 100);
});
