// The dashboard: polls /dashboard/data once a second and draws what it answers.
// Channel names come from browsers, so everything is written as text, never as HTML.
"use strict";

(function () {
  var POLL_MS = 1000;
  var HISTORY = 120; // samples kept per chart: two minutes
  var SVG = "http://www.w3.org/2000/svg";
  var series = {connections: [], users: [], channels: [], published: [], delivered: []};
  var previous = null;

  function byId(id) { return document.getElementById(id); }

  function push(name, value) {
    var values = series[name];
    values.push(value);
    if (values.length > HISTORY) values.shift();
  }

  // One SVG chart: a polyline per named series, on a scale shared by them.
  function draw(id, names) {
    var svg = byId(id);
    var top = 1;
    names.forEach(function (name) {
      series[name].forEach(function (value) { top = Math.max(top, value); });
    });
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    names.forEach(function (name) {
      var values = series[name];
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", name);
      line.setAttribute("points", values.map(function (value, index) {
        var x = (HISTORY - values.length + index) * 240 / (HISTORY - 1);
        return x.toFixed(1) + "," + (58 - value / top * 56).toFixed(1);
      }).join(" "));
      svg.appendChild(line);
    });
  }

  function rows(tbody, pairs) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    pairs.forEach(function (pair) {
      var row = tbody.insertRow();
      var name = row.insertCell();
      name.className = "channel";
      name.textContent = pair[0];
      row.insertCell().textContent = pair[1];
    });
  }

  // Messages per second since the last poll.  On a cluster the totals are the
  // sums of what each node wrote with its heartbeat (every counted_every
  // seconds), so the rates span the last two of those, not to jump at each write.
  // They start again when the nodes summed change or a total goes down (a
  // restarted server counts from 0 again).
  var samples = [];
  function rates(data) {
    var totals = ["messages_published", "messages_delivered"];
    if (previous !== null && (data.time <= previous.time ||
        data.summed_nodes !== previous.summed_nodes ||
        totals.some(function (name) { return data[name] < previous[name]; }))) {
      samples = [];
    }
    previous = data;
    samples.push(data);
    var span = Math.max(POLL_MS / 1000, 2 * (data.counted_every || 0));
    while (samples.length > 2 && samples[1].time <= data.time - span) samples.shift();
    var first = samples[0];
    return totals.map(function (name) {
      return samples.length < 2 ? 0 : (data[name] - first[name]) / (data.time - first.time);
    });
  }

  function show(data) {
    var perSecond = rates(data);
    var published = perSecond[0];
    var delivered = perSecond[1];
    byId("connections").textContent = data.connections;
    byId("users").textContent = data.users;
    byId("channels").textContent = data.channels;
    byId("published-rate").textContent = published.toFixed(1);
    byId("delivered-rate").textContent = delivered.toFixed(1);
    byId("published-total").textContent = data.messages_published;
    byId("delivered-total").textContent = data.messages_delivered;
    push("connections", data.connections);
    push("users", data.users);
    push("channels", data.channels);
    push("published", published);
    push("delivered", delivered);
    draw("chart-connections", ["connections"]);
    draw("chart-users", ["users"]);
    draw("chart-channels", ["channels"]);
    draw("chart-messages", ["published", "delivered"]);
    rows(byId("busiest").tBodies[0], data.busiest_channels.map(function (entry) {
      return [entry.channel, entry.connections];
    }));
    rows(byId("transports").tBodies[0], Object.keys(data.connections_by_transport).sort()
      .map(function (name) { return [name, data.connections_by_transport[name]]; }));
    var nodes = byId("nodes");
    while (nodes.firstChild) nodes.removeChild(nodes.firstChild);
    (data.nodes.length ? data.nodes : ["this process (no cluster)"]).forEach(function (node) {
      nodes.appendChild(document.createElement("li")).textContent = node;
    });
    var status = byId("status");
    status.className = "status";
    status.textContent = "updated " + new Date(data.time * 1000).toLocaleTimeString() + " · " +
      (data.cluster === "up" ? "the cluster's figures, " + data.summed_nodes + " nodes summed"
        : data.cluster === "down" ? "the cluster is down: this node's figures only"
          : "this process's figures");
  }

  function poll() {
    fetch("/dashboard/data", {credentials: "same-origin", cache: "no-store"})
      .then(function (response) {
        if (response.status === 403) {
          window.location.reload(); // the session ended: back to the login form
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) { if (data !== null) show(data); })
      .catch(function (error) {
        var status = byId("status");
        status.className = "status down";
        status.textContent = "server unreachable (" + error.message + ")";
      })
      .then(function () { window.setTimeout(poll, POLL_MS); });
  }

  poll();
})();
