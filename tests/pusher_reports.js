// What pusher-js reports, as plain objects, for the tests: shared by
// tests/pusher_driver.js (pusher-js in Node) and tests/browser/pusher.html
// (pusher-js in Chromium), so both runs report alike.
//   {"on": "state", "current": "connected", "socket_id": "1.2"}
//   {"on": "error", "code": 4001, "message": "..."}
//   {"on": "subscribed", "channel": "c", "members": {"count": n, "me": ..., "ids": [...], "hash": {...}}}
//   {"on": "subscription_error", "channel": "c", "status": 401}
//   {"on": "event", "channel": "c", "event": "e", "data": ..., "user_id": ...}
//   {"on": "member_added" | "member_removed", "channel": "c", "id": "1", "info": ...}
//   {"on": "subscription_count", "channel": "c", "count": n}        (part S)
(function (exports) {
  "use strict";

  exports.watchConnection = function (pusher, out) {
    pusher.connection.bind("state_change", (states) => {
      out({ on: "state", current: states.current, socket_id: pusher.connection.socket_id });
    });
    pusher.connection.bind("error", (error) => {
      // A pusher:error during the handshake comes wrapped in a HandshakeError.
      const data = (error && (error.data || (error.error && error.error.data))) || {};
      out({ on: "error", code: data.code === undefined ? null : data.code, message: data.message });
    });
  };

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

  exports.subscribe = function (pusher, name, out) {
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
    // Part S: Pusher's subscription counts (--subscription-count).
    channel.bind("pusher:subscription_count", (data) => {
      out({ on: "subscription_count", channel: name, count: data.subscription_count });
    });
    channel.bind_global((event, data, metadata) => {
      if (event.startsWith("pusher:") || event.startsWith("pusher_internal:")) return;
      out({ on: "event", channel: name, event, data, user_id: metadata && metadata.user_id });
    });
    return channel;
  };
})(typeof module === "object" ? module.exports : (window.pusherReports = {}));
