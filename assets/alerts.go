package assets

import (
	"embed"
	"io/fs"
)

//go:embed alerts/*.yaml
var alertRules embed.FS

// AlertRules returns gluebox's default alerting rules: vmalert rule-group files (*.yaml) at the
// root of the returned file system. appliance/alerts writes them for vmalert, after replacing
// the %{NAME} placeholders its package doc lists.
func AlertRules() fs.FS {
	sub, err := fs.Sub(alertRules, "alerts")
	if err != nil {
		// fs.Sub fails only on an invalid path, and this one is a constant.
		panic("assets: " + err.Error())
	}
	return sub
}
