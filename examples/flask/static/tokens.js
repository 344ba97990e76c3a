// The page's tokens for Thunder.connect: the user token from POST /push/token,
// a channel token from POST /push/auth with {"channel": "<name>"}; both
// endpoints of your site answer {"token": "<token>"} (docs/security.rst).
// thunderpush.js calls these on every (re)connect and hands them a
// callback(error, token) that wants the token string itself.
function postForToken(url, body, callback) {
  fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body)
  })
    .then(function (response) {
      if (!response.ok) { throw new Error(url + ": HTTP " + response.status); }
      return response.json();
    })
    .then(function (data) { callback(null, data.token); }, callback);
}

var pushTokens = {
  token: function (callback) {
    postForToken("/push/token", {}, callback);
  },
  authorize: function (channel, callback) {
    postForToken("/push/auth", {channel: channel}, callback);
  }
};
