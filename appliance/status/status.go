// Package status owns the shape of `gluebox status`: the Status report of a running server and
// the route that answers it. appliance/server fills it in and registers the handler; the typed
// client decodes it. It lives apart from appliance/server so that the client (and whatever uses
// the client) does not depend on the server's wiring.
//
// It has no lifecycle. Anything may import it.
package status

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Route answers Status.
var Route = api.Route{Method: http.MethodGet, Pattern: "/v1/status"}

// Status is what `gluebox status` prints.
type Status struct {
	Phase      string                 `json:"phase"` // starting, ready, degraded (ready, a component restarting), stopping
	Node       string                 `json:"node"`
	NodeIP     string                 `json:"nodeIP"`
	DataDir    string                 `json:"dataDir"`
	Uptime     string                 `json:"uptime"`
	BootTime   string                 `json:"bootTime,omitempty"`
	Components []supervise.State      `json:"components"`
	Children   []supervise.ChildState `json:"children"`
	Versions   map[string]string      `json:"versions"`
	Kubeconfig string                 `json:"kubeconfig"`
	APIServer  string                 `json:"apiServer"`
	LastError  string                 `json:"lastError,omitempty"`
	Registry   *registry.Status       `json:"registry,omitempty"`
	Secrets    *secrets.Status        `json:"secrets,omitempty"`
}
