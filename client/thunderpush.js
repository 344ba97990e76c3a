/*
 * Thunderpush browser client.
 *
 * A single file with no build step, plain ES5, on top of sockjs-client 1.x
 * (the global `SockJS`, loaded before this file).  It exposes the global
 * `Thunder`:
 *
 *   Thunder.connect(server, apiKey, channels, options)
 *       server    "host" or "host:port" of the Thunderpush server; the client
 *                 connects to <protocol>://<server>/connect.
 *       apiKey    the public API key (never the secret).
 *       channels  channels to subscribe to, e.g. ["news", "chat"] (optional).
 *       options   (all optional)
 *         user        the user id.  Default: a random id generated once per
 *                     page, so every connect() and reconnect of the page is
 *                     the same user.  It may not contain ":" or whitespace.
 *         token       the user's token, made by the page's backend with the
 *                     API secret (thunderpush.auth.user_token); needed when
 *                     the server requires signed users.  A string, or a
 *                     function (callback) that calls callback(error, token);
 *                     the function is asked again before every reconnect.
 *         authorize   function (channel, callback), asked for a channel
 *                     token (thunderpush.auth.channel_token) each time a
 *                     "private-" or "presence-" channel is subscribed, on
 *                     every reconnect too; it calls callback(error, token).
 *         protocol    "http" (default) or "https".
 *         log         true for verbose logging on the console (also handed to
 *                     SockJS as its `debug` option).
 *         retry       false to never reconnect (default true).
 *         transports  a SockJS transport name or an array of them, e.g.
 *                     "websocket" or ["xhr-streaming", "xhr-polling"];
 *                     handed to SockJS as its `transports` option to restrict
 *                     the transports it may use.  Default: all of them.
 *
 *   Thunder.listen(function (message, meta) { ... })
 *       Called for every message, by every handler registered.  `message`
 *       is the published body parsed as JSON (the raw string when it is not
 *       JSON).  `meta` is {channel: "name"} for a channel message and is not
 *       passed for a message sent to the user.  The server's events
 *       (subscription and presence news) never reach these handlers.
 *       Messages missed while reconnecting come here too, in order (see
 *       listenRecovery).
 *
 *   Thunder.subscribe(channel, success, error)
 *   Thunder.unsubscribe(channel, success, error)
 *       Add or remove a channel.  Before the connection is open (or before
 *       connect()) the change is remembered and applied when it opens.
 *       As in the original client, success(Thunder, message) is called once
 *       the command is sent or remembered ("Channel subscribed", "Channel
 *       already subscribed", "Channel unsubscribed") and error(Thunder,
 *       message) when the channel name is invalid (1 to 64 characters, each
 *       a letter, digit or one of _ - = @ , . ;).  For a "private-" or
 *       "presence-" channel the server answers: success(Thunder, "Channel
 *       subscribed") runs once it confirms, error(Thunder, message) once it
 *       refuses or `authorize` fails; a refused channel is dropped.
 *
 *   Thunder.members(channel)
 *       The user ids in a presence channel, in order of joining, this user
 *       included; [] while not subscribed.
 *
 *   Thunder.listenPresence(function (kind, info) { ... })
 *       Called with kind "members" when a presence channel is (re)subscribed
 *       (info.user is this user), "member_added" or "member_removed" when
 *       another user joins or leaves; info is {channel, user, members}.
 *
 *   Thunder.listenRecovery(function (channel, info) { ... })
 *       For channels that keep history on the server: called after each
 *       reconnect once the server has answered for `channel`, with info
 *       {complete, epoch, offset}.  complete true: every message missed while
 *       away has just been delivered to the listen handlers, in order.
 *       complete false: some are gone (or the channel no longer keeps
 *       history), so the page should reload its state.  epoch and offset
 *       are where the channel's stream now stands ("" and 0: no stream).
 *
 *   Thunder.disconnect()
 *       Close the connection and do not reconnect.  The channel list, the
 *       positions seen on the channels and the listeners are kept for a
 *       later connect().
 *
 *   Thunder.onSockOpen(fn), onSockClose(fn), onSockError(fn), onSockMessage(fn)
 *       Register a hook, as with the original client: fn is called with the
 *       SockJS event (and `this` set to Thunder).  onSockOpen runs once
 *       CONNECT and SUBSCRIBE are sent, so it may subscribe right away.
 *
 *   Thunder.channels, Thunder.user, Thunder.socket, Thunder.handlers
 *       Read-only views kept under the original client's names.
 *
 * After a close the client reconnects after 1, 2.5, 5, 10 and 30 seconds,
 * then every 60 seconds, starting over once a connection opens.  It never
 * reconnects after the server's final close codes (9000 invalid API key,
 * 9001 subscribing before connecting, 9002 forced logout, 9003 invalid
 * signature): retrying cannot succeed there.  On every (re)open it sends
 * CONNECT, then a single SUBSCRIBE with every channel it holds (a private
 * channel whose token comes later gets a SUBSCRIBE of its own).
 *
 * Deliveries on a channel that keeps history carry its stream's epoch and
 * offset; the client remembers the last of each channel (until it is
 * unsubscribed), adds " since=<epoch>/<offset>" to that channel's SUBSCRIBE
 * item on a reconnect (after the token), and drops a delivery whose offset
 * it has already seen in the same epoch.  A server that sent no positions
 * never sees "since=".
 */
(function (global) {
    'use strict';

    var RETRY_DELAYS = [1000, 2500, 5000, 10000, 30000];
    var RETRY_DELAY_AFTERWARDS = 60000;
    var FINAL_CLOSE_CODES = { 9000: true, 9001: true, 9002: true, 9003: true };
    var CHANNEL_NAME = /^[A-Za-z0-9_\-=@,.;]{1,64}$/;
    // The server subscribes these only with a channel token.
    var TOKEN_CHANNEL = /^(private|presence)-/;
    // A token follows ":" in CONNECT and " " in SUBSCRIBE, so holds neither.
    var TOKEN = /^[^\s:]+$/;
    // A stream's epoch, as the server makes it; anything else in a `since=`
    // word would make the server skip the whole SUBSCRIBE item.
    var EPOCH = /^[0-9a-f]{16}$/;

    var pageUser = null;

    // One id per page load, so that every reconnect is the same user.
    function defaultUser() {
        if (pageUser === null) {
            var crypto = global.crypto || global.msCrypto;
            var id = '';
            if (crypto && crypto.getRandomValues) {
                var bytes = new Uint8Array(12);
                crypto.getRandomValues(bytes);
                for (var i = 0; i < bytes.length; i++) {
                    id += (bytes[i] + 0x100).toString(16).slice(1);
                }
            } else {
                while (id.length < 24) {
                    id += Math.random().toString(16).slice(2);
                }
                id = id.slice(0, 24);
            }
            pageUser = id;
        }
        return pageUser;
    }

    function isValidChannel(channel) {
        return typeof channel === 'string' && CHANNEL_NAME.test(channel);
    }

    function needsToken(channel) {
        return TOKEN_CHANNEL.test(channel);
    }

    function indexOf(list, item) {
        for (var i = 0; i < list.length; i++) {
            if (list[i] === item) {
                return i;
            }
        }
        return -1;
    }

    function remove(list, item) {
        var index = indexOf(list, item);
        if (index !== -1) {
            list.splice(index, 1);
        }
        return index !== -1;
    }

    function warn(message) {
        if (global.console && global.console.warn) {
            global.console.warn('Thunder: ' + message);
        }
    }

    function errorText(error) {
        return error && typeof error.message === 'string' ? error.message : String(error);
    }

    // Asks the page for a token through `ask(args..., callback)` and hands
    // the answer to done(errorMessage, token) exactly once, whether the page
    // answers at once, later, twice, with garbage or by throwing.
    function askToken(ask, args, done) {
        var answered = false;
        function callback(error, token) {
            if (answered) {
                return;
            }
            answered = true;
            if (error) {
                done(errorText(error));
            } else if (typeof token !== 'string' || !TOKEN.test(token)) {
                done('Not a token: ' + token);
            } else {
                done(null, token);
            }
        }
        try {
            ask.apply(null, args.concat([callback]));
        } catch (err) {
            callback(err || 'failed');
        }
    }

    // sockjs-client hands over the parsed JSON element; accept a JSON string
    // too, in case another SockJS client or server version delivers that.
    function parseMessage(data) {
        if (typeof data === 'string') {
            try {
                data = JSON.parse(data);
            } catch (err) {
                return null;
            }
        }
        return data && typeof data === 'object' ? data : null;
    }

    // A delivery's or a `recovered` event's place in its channel's stream,
    // or null when it has none (the channel keeps no history).
    function position(epoch, offset) {
        if (typeof epoch !== 'string' || !EPOCH.test(epoch) || typeof offset !== 'number' ||
                offset % 1 !== 0 || offset < 0) {
            return null;
        }
        return { epoch: epoch, offset: offset };
    }

    function parsePayload(payload) {
        try {
            return JSON.parse(payload);
        } catch (err) {
            return payload;
        }
    }

    // One listener's exception must not keep the others from their message;
    // rethrow it asynchronously so it still shows up in the console.
    function callSafely(handler, args) {
        try {
            handler.apply(null, args);
        } catch (err) {
            setTimeout(function () {
                throw err;
            }, 0);
        }
    }

    var Thunder = {
        onSockOpen: function (fn) { this._hook('open', fn); },
        onSockClose: function (fn) { this._hook('close', fn); },
        onSockError: function (fn) { this._hook('error', fn); },
        onSockMessage: function (fn) { this._hook('message', fn); },

        channels: [],
        handlers: [],
        socket: null,
        user: null,

        _server: null,
        _apiKey: null,
        _options: {},
        _hooks: {},
        _presenceHandlers: [],
        _recoveryHandlers: [],
        // Channel -> {epoch, offset} of the last delivery seen there, kept
        // across reconnects so that the next SUBSCRIBE asks for what was missed.
        _positions: {},
        _retries: 0,
        _retryTimer: null,
        _stopped: true,
        // Token channels -> the subscribe() callbacks waiting for an answer.
        _waiting: {},
        // What holds for the current connection only (see _forgetConnection).
        _connected: false,
        _confirmed: {},
        _members: {},
        _tickets: {},
        _batch: null,

        connect: function (server, apiKey, channels, options) {
            this._stop();
            options = options || {};
            this._server = server;
            this._apiKey = apiKey;
            this._options = options;
            this.user = options.user === undefined || options.user === null ?
                defaultUser() : String(options.user);
            if (/[:\s]/.test(this.user)) {
                warn('a user id containing ":" or whitespace is ignored by the server: ' +
                     this.user);
            }
            var list = channels || [];
            for (var i = 0; i < list.length; i++) {
                if (!isValidChannel(list[i])) {
                    warn('skipped an invalid channel name: ' + list[i]);
                } else if (indexOf(this.channels, list[i]) === -1) {
                    this.channels.push(list[i]);
                }
            }
            this._retries = 0;
            this._stopped = false;
            this._open();
        },

        disconnect: function () {
            this._log('disconnecting');
            this._stop();
        },

        listen: function (handler) {
            this.handlers.push(handler);
        },

        listenPresence: function (handler) {
            this._presenceHandlers.push(handler);
        },

        listenRecovery: function (handler) {
            this._recoveryHandlers.push(handler);
        },

        members: function (channel) {
            return (this._members[channel] || []).slice();
        },

        subscribe: function (channel, success, error) {
            if (!this._checkChannel(channel, error)) {
                return false;
            }
            var held = indexOf(this.channels, channel) !== -1;
            if (needsToken(channel) && !(held && this._confirmed[channel])) {
                // The server's answer calls back, now or after a reconnect.
                (this._waiting[channel] = this._waiting[channel] || []).push(
                    { success: success, error: error });
                if (!held) {
                    this.channels.push(channel);
                    if (this._connected) {
                        this._authorize(channel);
                    }
                }
                return true;
            }
            if (!held) {
                this.channels.push(channel);
                this._sendIfConnected('SUBSCRIBE ' + channel);
            }
            if (typeof success === 'function') {
                success(this, held ? 'Channel already subscribed' : 'Channel subscribed');
            }
            return true;
        },

        unsubscribe: function (channel, success, error) {
            if (!this._checkChannel(channel, error)) {
                return false;
            }
            remove(this.channels, channel);
            this._forgetChannel(channel);
            this._sendIfConnected('UNSUBSCRIBE ' + channel);
            if (typeof success === 'function') {
                success(this, 'Channel unsubscribed');
            }
            return true;
        },

        // -- internals ---------------------------------------------------

        _hook: function (name, fn) {
            if (typeof fn === 'function') {
                this._hooks[name] = fn;
            }
        },

        _fire: function (name, event) {
            var fn = this._hooks[name];
            if (fn) {
                fn.call(this, event);
            }
        },

        _log: function () {
            if (this._options.log && global.console && global.console.log) {
                var args = Array.prototype.slice.call(arguments);
                args.unshift('Thunder:');
                global.console.log.apply(global.console, args);
            }
        },

        _checkChannel: function (channel, error) {
            if (isValidChannel(channel)) {
                return true;
            }
            var reason = 'Invalid channel name.';
            if (typeof error === 'function') {
                error(this, reason);
            } else {
                warn(reason + ' ' + channel);
            }
            return false;
        },

        _send: function (command) {
            this._log('sending', command);
            this.socket.send(command);
        },

        // Commands go out only after CONNECT: the server closes a connection
        // (9001) that subscribes before it.
        _sendIfConnected: function (command) {
            var socket = this.socket;
            if (this._connected && socket && socket.readyState === SockJS.OPEN) {
                this._send(command);
                return true;
            }
            this._log('remembered until the connection opens:', command);
            return false;
        },

        // Closes the current socket, if any, and cancels any reconnect.
        _stop: function () {
            this._stopped = true;
            if (this._retryTimer !== null) {
                clearTimeout(this._retryTimer);
                this._retryTimer = null;
            }
            var socket = this.socket;
            this.socket = null;
            this._forgetConnection();
            if (socket && socket.readyState !== SockJS.CLOSING &&
                    socket.readyState !== SockJS.CLOSED) {
                socket.close();
            }
        },

        // Confirmations, members and pending channel tokens belong to one
        // connection; the next one asks and learns them again.
        _forgetConnection: function () {
            this._connected = false;
            this._confirmed = {};
            this._members = {};
            this._tickets = {};
            this._batch = null;
        },

        _forgetChannel: function (channel) {
            delete this._positions[channel];
            delete this._waiting[channel];
            delete this._confirmed[channel];
            delete this._members[channel];
            delete this._tickets[channel];
        },

        _open: function () {
            var self = this;
            var url = (this._options.protocol || 'http') + '://' + this._server + '/connect';
            var sockOptions = { debug: !!this._options.log };
            if (this._options.transports) {
                sockOptions.transports = this._options.transports;
            }
            this._log('connecting to', url, 'as', this.user);
            var socket = new SockJS(url, undefined, sockOptions);
            this.socket = socket;

            // Events of a socket that was replaced or stopped are not ours.
            function current() {
                return self.socket === socket;
            }

            socket.onopen = function (e) {
                if (!current()) {
                    return;
                }
                self._log('connected using', socket.transport);
                self._userToken(function (token) {
                    if (!current()) {
                        return;
                    }
                    self._retries = 0;
                    var credentials = self.user + ':' + self._apiKey;
                    self._send('CONNECT ' + (token ? credentials + ':' + token : credentials));
                    self._connected = true;
                    self._subscribeAll();
                    self._fire('open', e);
                });
            };
            socket.onmessage = function (e) {
                if (!current()) {
                    return;
                }
                self._fire('message', e);
                self._receive(e.data);
            };
            socket.onerror = function (e) {
                if (current()) {
                    self._fire('error', e);
                }
            };
            socket.onclose = function (e) {
                if (!current()) {
                    return;
                }
                self.socket = null;
                self._forgetConnection();
                self._log('closed:', e.code, e.reason);
                self._fire('close', e);
                self._scheduleReconnect(e.code);
            };
        },

        // Hands the user token (or none) to done; a page's token function
        // that fails leaves nothing to CONNECT with, so the socket is
        // dropped and the function asked again at the next attempt.
        _userToken: function (done) {
            var token = this._options.token;
            if (typeof token !== 'function') {
                done(token === undefined || token === null ? null : String(token));
                return;
            }
            var self = this;
            var socket = this.socket;
            askToken(token, [], function (error, value) {
                if (self.socket !== socket) {
                    return;
                }
                if (error) {
                    warn('no user token, reconnecting: ' + error);
                    self.socket = null;
                    socket.close();
                    self._scheduleReconnect(null);
                    return;
                }
                done(value);
            });
        },

        // One SUBSCRIBE for the public channels and for the token channels
        // whose `authorize` answers at once; later answers go on their own.
        _subscribeAll: function () {
            var items = [];
            var channels = this.channels.slice();
            this._batch = items;
            for (var i = 0; i < channels.length; i++) {
                if (needsToken(channels[i])) {
                    this._authorize(channels[i]);
                } else {
                    items.push(this._item(channels[i]));
                }
            }
            this._batch = null;
            if (items.length) {
                this._send('SUBSCRIBE ' + items.join(':'));
            }
        },

        // A SUBSCRIBE item: the channel, its token if any, and the position
        // of the last message seen there, from which the server sends the
        // ones missed while the client was away.
        _item: function (channel, token) {
            var item = token ? channel + ' ' + token : channel;
            var seen = this._positions[channel];
            return seen ? item + ' since=' + seen.epoch + '/' + seen.offset : item;
        },

        _authorize: function (channel) {
            var authorize = this._options.authorize;
            if (typeof authorize !== 'function') {
                this._refuse(channel, 'No authorize option for this channel.');
                return;
            }
            var self = this;
            // Only the latest request for this channel on this connection
            // counts: an unsubscribe or a reconnect voids the ticket.
            var ticket = {};
            this._tickets[channel] = ticket;
            askToken(authorize, [channel], function (error, token) {
                if (self._tickets[channel] !== ticket) {
                    return;
                }
                delete self._tickets[channel];
                if (error) {
                    self._refuse(channel, error);
                } else if (self._batch) {
                    self._batch.push(self._item(channel, token));
                } else {
                    self._sendIfConnected('SUBSCRIBE ' + self._item(channel, token));
                }
            });
        },

        _refuse: function (channel, message) {
            var waiting = this._waiting[channel] || [];
            if (!remove(this.channels, channel)) {
                return;
            }
            this._forgetChannel(channel);
            var told = false;
            for (var i = 0; i < waiting.length; i++) {
                if (typeof waiting[i].error === 'function') {
                    callSafely(waiting[i].error, [this, message]);
                    told = true;
                }
            }
            if (!told) {
                warn('not subscribed to ' + channel + ': ' + message);
            }
        },

        _confirm: function (channel, members) {
            if (indexOf(this.channels, channel) === -1) {
                return;
            }
            var waiting = this._waiting[channel] || [];
            delete this._waiting[channel];
            this._confirmed[channel] = true;
            for (var i = 0; i < waiting.length; i++) {
                if (typeof waiting[i].success === 'function') {
                    callSafely(waiting[i].success, [this, 'Channel subscribed']);
                }
            }
            if (members instanceof Array) {
                this._members[channel] = [];
                for (var j = 0; j < members.length; j++) {
                    if (typeof members[j] === 'string') {
                        this._members[channel].push(members[j]);
                    }
                }
                this._tellPresence('members', channel, this.user);
            }
        },

        _memberChange: function (kind, channel, user) {
            var members = this._members[channel];
            if (!members || typeof user !== 'string') {
                return;
            }
            if (kind === 'member_added') {
                if (indexOf(members, user) !== -1) {
                    return;
                }
                members.push(user);
            } else if (!remove(members, user)) {
                return;
            }
            this._tellPresence(kind, channel, user);
        },

        _tellPresence: function (kind, channel, user) {
            var handlers = this._presenceHandlers.slice();
            for (var i = 0; i < handlers.length; i++) {
                callSafely(handlers[i], [kind, {
                    channel: channel, user: user, members: this.members(channel)
                }]);
            }
        },

        // A delivery is {"payload": "<body>"} plus "channel" for channel
        // messages; an event is {"event": ..., "channel": ...} and never has
        // a payload, so old clients skip it.
        _receive: function (data) {
            var message = parseMessage(data);
            if (message && typeof message.event === 'string' &&
                    typeof message.channel === 'string') {
                this._log('event', message);
                this._event(message);
            } else if (message && typeof message.payload === 'string') {
                this._deliver(message);
            } else {
                this._log('ignored an unexpected message:', data);
            }
        },

        _event: function (event) {
            switch (event.event) {
            case 'subscription_succeeded':
                this._confirm(event.channel, event.members);
                break;
            case 'subscription_error':
                this._refuse(event.channel, typeof event.message === 'string' ?
                    event.message : 'Subscription refused.');
                break;
            case 'member_added':
            case 'member_removed':
                this._memberChange(event.event, event.channel, event.user);
                break;
            case 'recovered':
                this._recovered(event);
                break;
            default:
                this._log('ignored an unknown event:', event.event);
            }
        },

        // The server sent the missed messages (complete) or could not (their
        // epoch is gone or they were dropped); either way the stream goes on
        // from the position it names.
        _recovered: function (event) {
            var channel = event.channel;
            if (indexOf(this.channels, channel) === -1) {
                return;
            }
            var now = position(event.epoch, event.offset);
            if (now) {
                this._positions[channel] = now;
            } else {
                delete this._positions[channel];
            }
            var info = {
                complete: event.complete === true,
                epoch: now ? now.epoch : '',
                offset: now ? now.offset : 0
            };
            var handlers = this._recoveryHandlers.slice();
            for (var i = 0; i < handlers.length; i++) {
                callSafely(handlers[i], [channel, info]);
            }
        },

        // Notes the position of a channel delivery; false for one already
        // seen (the server sends none twice, but a page must never see it).
        _advance: function (delivery) {
            var channel = delivery.channel;
            var now = position(delivery.epoch, delivery.offset);
            if (!now || indexOf(this.channels, channel) === -1) {
                return true;
            }
            var seen = this._positions[channel];
            if (seen && seen.epoch === now.epoch && now.offset <= seen.offset) {
                this._log('dropped a message seen before:', channel, now.epoch, now.offset);
                return false;
            }
            this._positions[channel] = now;
            return true;
        },

        _deliver: function (delivery) {
            if (typeof delivery.channel === 'string' && !this._advance(delivery)) {
                return;
            }
            var message = parsePayload(delivery.payload);
            var args = typeof delivery.channel === 'string' ?
                [message, { channel: delivery.channel }] : [message];
            this._log('message', args);
            var handlers = this.handlers.slice();
            for (var i = 0; i < handlers.length; i++) {
                callSafely(handlers[i], args);
            }
        },

        _scheduleReconnect: function (code) {
            if (this._stopped || this._options.retry === false || FINAL_CLOSE_CODES[code]) {
                this._log('not reconnecting');
                return;
            }
            var delay = this._retries < RETRY_DELAYS.length ?
                RETRY_DELAYS[this._retries] : RETRY_DELAY_AFTERWARDS;
            this._retries += 1;
            this._log('reconnecting in', delay, 'ms');
            var self = this;
            this._retryTimer = setTimeout(function () {
                self._retryTimer = null;
                if (!self._stopped) {
                    self._open();
                }
            }, delay);
        }
    };

    global.Thunder = Thunder;
}(typeof window !== 'undefined' ? window : this));
