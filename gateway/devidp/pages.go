package devidp

import (
	"net/http"
	"net/url"

	"github.com/signals-sorcery/sas/shared/webpage"
)

type pageData struct {
	Title    string
	Error    string
	Consent  bool
	Email    string
	Username string
	Fields   url.Values // the authorization request, carried by the form
	MAC      string
}

var consentPage = webpage.Must(`
{{if .Consent}}
<h1>{{.Title}}</h1>
<p>Development sign-in: no password, nothing leaves this machine. Continue as:</p>
{{if .Error}}<div class="error">{{.Error}}</div>{{end}}
<form method="post" action="authorize">
{{range $k, $v := .Fields}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">{{end}}
<input type="hidden" name="mac" value="{{.MAC}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" value="{{.Email}}" autocomplete="email" required>
<label for="username">Username</label>
<input id="username" name="username" value="{{.Username}}" autocomplete="username">
<div class="actions">
<button class="secondary" name="action" value="deny" type="submit" formnovalidate>Cancel</button>
<button class="primary" name="action" value="approve" type="submit">Continue</button>
</div>
</form>
<p class="fine">Dev identity provider of sas-gateway dev. It signs tokens for anyone who asks; it only runs on loopback.</p>
{{else}}
<div class="status bad">!</div>
<h1>{{.Title}}</h1>
<div class="error">{{.Error}}</div>
<p>Close this tab and start sign-in again from the app.</p>
{{end}}`)

func (p *Provider) page(w http.ResponseWriter, status int, d pageData) {
	consentPage.Serve(w, status, d)
}
