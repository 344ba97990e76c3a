// Drives the real pusher-js (client/node_modules) for tests/test_pusher_js.py.
//
// Usage: node pusher_driver.js <host> <port> <key> <auth base URL>
// Reads commands from stdin, one JSON object a line:
//   {"do": "subscribe", "channel": "c"}        {"do": "unsubscribe", "channel": "c"}
//   {"do": "trigger", "channel": "c", "event": "client-x", "data": {...}}
//   {"do": "signin"}                            {"do": "disconnect"}
//   {"do": "watch"}   (part S: before signin, report the user's watchlist events)
// and writes what pusher-js reports to stdout, one JSON object a line: those of
// pusher_reports.js, and
//   {"on": "triggered", "sent": true}   {"on": "signed_in", "user": {...}}
//   {"on": "user_event", "event": "e", "data": ...}  (to the signed-in user)
//   {"on": "watchlist", "name": "online" | "offline", "user_ids": [...]}  (part S)
"use strict";

const readline = require("readline");
const Pusher = require("pusher-js");
const reports = require("./pusher_reports.js");

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
reports.watchConnection(pusher, out);

const commands = {
  subscribe: (command) => reports.subscribe(pusher, command.channel, out),
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
  // Part S: the watchlist (pusher.user.watchlist, pusher-js 8).
  watch: () => {
    for (const name of ["online", "offline"]) {
      pusher.user.watchlist.bind(name, (event) => {
        out({ on: "watchlist", name, user_ids: event.user_ids });
      });
    }
  },
};

// -- Part C (cache channels) --------------------------------------------------
//   {"do": "subscribe_cache", "channel": "cache-c"}: subscribes as "subscribe" does,
//   and reports {"on": "cache_miss", "channel": "cache-c"} when pusher-js fires
//   the channel's "pusher:cache_miss" binding.
commands.subscribe_cache = (command) => {
  const channel = reports.subscribe(pusher, command.channel, out);
  channel.bind("pusher:cache_miss", () => out({ on: "cache_miss", channel: command.channel }));
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  commands[command.do](command);
});
process.stdin.on("end", () => {
  pusher.disconnect();
  setTimeout(() => process.exit(0), 100);
});
