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
 *                     the same user.  It may not contain ":".
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
 *       passed for a message sent to the user.
 *
 *   Thunder.subscribe(channel, success, error)
 *   Thunder.unsubscribe(channel, success, error)
 *       Add or remove a channel.  Before the socket is open (or before
 *       connect()) the change is remembered and applied when it opens.
 *       As in the original client, success(Thunder, message) is called once
 *       the command is sent or remembered ("Channel subscribed", "Channel
 *       already subscribed", "Channel unsubscribed") and error(Thunder,
 *       message) when the channel name is invalid (1 to 64 characters, each
 *       a letter, digit or one of _ - = @ , . ;).
 *
 *   Thunder.disconnect()
 *       Close the connection and do not reconnect.  The channel list and the
 *       listeners are kept for a later connect().
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
 * CONNECT, then a single SUBSCRIBE with every channel it holds.
 */
(function (global) {
    'use strict';

    var RETRY_DELAYS = [1000, 2500, 5000, 10000, 30000];
    var RETRY_DELAY_AFTERWARDS = 60000;
    var FINAL_CLOSE_CODES = { 9000: true, 9001: true, 9002: true, 9003: true };
    var CHANNEL_NAME = /^[A-Za-z0-9_\-=@,.;]{1,64}$/;

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

    function indexOf(list, item) {
        for (var i = 0; i < list.length; i++) {
            if (list[i] === item) {
                return i;
            }
        }
        return -1;
    }

    function warn(message) {
        if (global.console && global.console.warn) {
            global.console.warn('Thunder: ' + message);
        }
    }

    // A delivery is {"payload": "<body>"} plus "channel" for channel messages.
    // sockjs-client hands over the parsed JSON element; accept a JSON string
    // too, in case another SockJS client or server version delivers that.
    function parseDelivery(data) {
        if (typeof data === 'string') {
            try {
                data = JSON.parse(data);
            } catch (err) {
                return null;
            }
        }
        if (!data || typeof data !== 'object' || typeof data.payload !== 'string') {
            return null;
        }
        return data;
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
        _retries: 0,
        _retryTimer: null,
        _stopped: true,

        connect: function (server, apiKey, channels, options) {
            this._stop();
            options = options || {};
            this._server = server;
            this._apiKey = apiKey;
            this._options = options;
            this.user = options.user === undefined || options.user === null ?
                defaultUser() : String(options.user);
            if (this.user.indexOf(':') !== -1) {
                warn('a user id containing ":" is ignored by the server: ' + this.user);
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

        subscribe: function (channel, success, error) {
            if (!this._checkChannel(channel, error)) {
                return false;
            }
            var message = 'Channel already subscribed';
            if (indexOf(this.channels, channel) === -1) {
                this.channels.push(channel);
                this._sendIfOpen('SUBSCRIBE ' + channel);
                message = 'Channel subscribed';
            }
            if (typeof success === 'function') {
                success(this, message);
            }
            return true;
        },

        unsubscribe: function (channel, success, error) {
            if (!this._checkChannel(channel, error)) {
                return false;
            }
            var index = indexOf(this.channels, channel);
            if (index !== -1) {
                this.channels.splice(index, 1);
            }
            this._sendIfOpen('UNSUBSCRIBE ' + channel);
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

        _sendIfOpen: function (command) {
            var socket = this.socket;
            if (socket && socket.readyState === SockJS.OPEN) {
                this._log('sending', command);
                socket.send(command);
                return true;
            }
            this._log('remembered until the socket opens:', command);
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
            if (socket && socket.readyState !== SockJS.CLOSING &&
                    socket.readyState !== SockJS.CLOSED) {
                socket.close();
            }
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
                self._retries = 0;
                self._log('connected using', socket.transport);
                socket.send('CONNECT ' + self.user + ':' + self._apiKey);
                if (self.channels.length) {
                    socket.send('SUBSCRIBE ' + self.channels.join(':'));
                }
                self._fire('open', e);
            };
            socket.onmessage = function (e) {
                if (!current()) {
                    return;
                }
                self._fire('message', e);
                self._deliver(e.data);
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
                self._log('closed:', e.code, e.reason);
                self._fire('close', e);
                self._scheduleReconnect(e.code);
            };
        },

        _deliver: function (data) {
            var delivery = parseDelivery(data);
            if (delivery === null) {
                this._log('ignored an unexpected message:', data);
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
