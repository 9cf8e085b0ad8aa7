package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/gluebox/gluebox/appliance/api"
)

// Request and answer bodies of the API. Values travel as strings; a value that is not UTF-8
// travels base64-encoded in the *Base64 map instead.
type (
	// SetRequest is the body of RouteSet.
	SetRequest struct {
		Values       map[string]string `json:"values,omitempty"`
		ValuesBase64 map[string]string `json:"values_base64,omitempty"`
		By           string            `json:"by,omitempty"`
	}
	// VersionAnswer carries the version a write created.
	VersionAnswer struct {
		Path    string `json:"path"`
		Version uint64 `json:"version"`
	}
	// SecretAnswer is the body of RouteGet.
	SecretAnswer struct {
		Secret
		Values       map[string]string `json:"values"`
		ValuesBase64 map[string]string `json:"values_base64,omitempty"`
	}
	// RollbackRequest is the body of RouteRollback.
	RollbackRequest struct {
		Version uint64 `json:"version"`
		By      string `json:"by,omitempty"`
	}
	// ImportRequest is the body of RouteImport.
	ImportRequest struct {
		Path    string `json:"path"`
		Format  string `json:"format,omitempty"` // "env", "json" or "" to guess
		Name    string `json:"name,omitempty"`   // file name, for messages
		Data    string `json:"data"`
		Replace bool   `json:"replace,omitempty"`
		By      string `json:"by,omitempty"`
	}
	// ImportAnswer says what an import stored.
	ImportAnswer struct {
		VersionAnswer
		Keys []string `json:"keys"`
	}
	// ByRequest is a body that only names who asks (rotate-key, backup create).
	ByRequest struct {
		By string `json:"by,omitempty"`
	}
	// RotateAnswer is the answer of RouteRotateKey.
	RotateAnswer struct {
		Recipient string `json:"recipient"`
	}
	// BackupFileRequest names a backup: a file name in the backups dir or an absolute path.
	BackupFileRequest struct {
		File string `json:"file"`
		By   string `json:"by,omitempty"`
	}
)

const maxBody = 80 << 20

var _ api.Registrar = (*Service)(nil)

// Routes of the secret store's local API.
var (
	// RouteList: list paths (?prefix=P) → []PathInfo.
	RouteList = api.Route{Method: http.MethodGet, Pattern: "/v1/secrets"}
	// RouteGet: values of a path (?version=N&key=K) → SecretAnswer.
	RouteGet = api.Route{Method: http.MethodGet, Pattern: "/v1/secrets/{path...}"}
	// RouteSet: set keys: SetRequest → VersionAnswer.
	RouteSet = api.Route{Method: http.MethodPut, Pattern: "/v1/secrets/{path...}"}
	// RouteDelete: delete keys (?key=K&by=U), or the whole path without key → VersionAnswer.
	RouteDelete = api.Route{Method: http.MethodDelete, Pattern: "/v1/secrets/{path...}"}
	// RouteHistory: kept versions → []VersionInfo.
	RouteHistory = api.Route{Method: http.MethodGet, Pattern: "/v1/secrets-history/{path...}"}
	// RouteRollback: RollbackRequest → VersionAnswer.
	RouteRollback = api.Route{Method: http.MethodPost, Pattern: "/v1/secrets-rollback/{path...}"}
	// RouteImport: ImportRequest → ImportAnswer.
	RouteImport = api.Route{Method: http.MethodPost, Pattern: "/v1/secrets-import"}
	// RouteRotateKey: ByRequest → RotateAnswer.
	RouteRotateKey = api.Route{Method: http.MethodPost, Pattern: "/v1/secrets-rotate-key"}
	// RouteAudit: audit log, newest first (?limit=N) → []AuditEntry.
	RouteAudit = api.Route{Method: http.MethodGet, Pattern: "/v1/secrets-audit"}
	// RouteStatus: Status.
	RouteStatus = api.Route{Method: http.MethodGet, Pattern: "/v1/secrets-status"}
	// RouteBackups: list backups → []Manifest.
	RouteBackups = api.Route{Method: http.MethodGet, Pattern: "/v1/backups"}
	// RouteBackupCreate: take a backup now → Manifest.
	RouteBackupCreate = api.Route{Method: http.MethodPost, Pattern: "/v1/backups"}
	// RouteBackupVerify: BackupFileRequest → VerifyReport.
	RouteBackupVerify = api.Route{Method: http.MethodPost, Pattern: "/v1/backups/verify"}
	// RouteBackupRestore: BackupFileRequest → RestoreReport.
	RouteBackupRestore = api.Route{Method: http.MethodPost, Pattern: "/v1/backups/restore"}
)

// Register adds the secret store's routes to mux.
func (s *Service) Register(mux *http.ServeMux) {
	st := s.store
	RouteList.Register(mux, handle(func(r *http.Request) (any, error) {
		list, err := st.List(r.Context(), r.URL.Query().Get("prefix"))
		if list == nil {
			list = []PathInfo{}
		}
		return list, err
	}))
	RouteGet.Register(mux, handle(func(r *http.Request) (any, error) {
		var version uint64
		if v := r.URL.Query().Get("version"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return nil, inputErrorf("version %q is not a positive number", v)
			}
			version = n
		}
		sec, err := st.Get(r.Context(), r.PathValue("path"), version)
		if err != nil {
			return nil, err
		}
		if k := r.URL.Query().Get("key"); k != "" {
			v, ok := sec.Values[k]
			if !ok {
				return nil, api.Errorf(http.StatusNotFound, "key %s is not in %s (keys: %v)", k, sec.Path, slices.Sorted(maps.Keys(sec.Values)))
			}
			sec.Values = map[string][]byte{k: v}
		}
		ans := SecretAnswer{Secret: *sec, Values: map[string]string{}}
		for k, v := range sec.Values {
			if utf8.Valid(v) {
				ans.Values[k] = string(v)
			} else {
				if ans.ValuesBase64 == nil {
					ans.ValuesBase64 = map[string]string{}
				}
				ans.ValuesBase64[k] = base64.StdEncoding.EncodeToString(v)
			}
		}
		return ans, nil
	}))
	RouteSet.Register(mux, handle(func(r *http.Request) (any, error) {
		var req SetRequest
		if err := api.DecodeJSON(r, maxBody, &req); err != nil {
			return nil, err
		}
		values := map[string][]byte{}
		for k, v := range req.Values {
			values[k] = []byte(v)
		}
		for k, v := range req.ValuesBase64 {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, inputErrorf("values_base64 key %s is not base64: %v", k, err)
			}
			values[k] = b
		}
		path := r.PathValue("path")
		v, err := st.Set(r.Context(), path, values, by(req.By))
		return VersionAnswer{Path: path, Version: v}, err
	}))
	RouteDelete.Register(mux, handle(func(r *http.Request) (any, error) {
		path, q := r.PathValue("path"), r.URL.Query()
		if keys := q["key"]; len(keys) > 0 {
			v, err := st.DeleteKeys(r.Context(), path, keys, by(q.Get("by")))
			return VersionAnswer{Path: path, Version: v}, err
		}
		return VersionAnswer{Path: path}, st.DeletePath(r.Context(), path, by(q.Get("by")))
	}))
	RouteHistory.Register(mux, handle(func(r *http.Request) (any, error) {
		return st.History(r.Context(), r.PathValue("path"))
	}))
	RouteRollback.Register(mux, handle(func(r *http.Request) (any, error) {
		var req RollbackRequest
		if err := api.DecodeJSON(r, 1<<20, &req); err != nil {
			return nil, err
		}
		if req.Version == 0 {
			return nil, inputErrorf("no version given: pick one from `gluebox secret history`")
		}
		path := r.PathValue("path")
		v, err := st.Rollback(r.Context(), path, req.Version, by(req.By))
		return VersionAnswer{Path: path, Version: v}, err
	}))
	RouteImport.Register(mux, handle(func(r *http.Request) (any, error) {
		var req ImportRequest
		if err := api.DecodeJSON(r, maxBody, &req); err != nil {
			return nil, err
		}
		if err := ValidatePath(req.Path); err != nil {
			return nil, err
		}
		name := req.Name
		if name == "" {
			name = "import"
		}
		values, err := ParseImport(name, req.Format, []byte(req.Data))
		if err != nil {
			return nil, err
		}
		v, err := st.Import(r.Context(), req.Path, values, req.Replace, by(req.By))
		return ImportAnswer{VersionAnswer: VersionAnswer{Path: req.Path, Version: v}, Keys: slices.Sorted(maps.Keys(values))}, err
	}))
	RouteRotateKey.Register(mux, handle(func(r *http.Request) (any, error) {
		var req ByRequest
		if err := api.DecodeJSON(r, 1<<20, &req); err != nil {
			return nil, err
		}
		rc, err := st.RotateKey(r.Context(), by(req.By))
		return RotateAnswer{Recipient: rc}, err
	}))
	RouteAudit.Register(mux, handle(func(r *http.Request) (any, error) {
		limit := 0
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, inputErrorf("limit %q is not a non-negative number", v)
			}
			limit = n
		}
		return st.Audit(r.Context(), limit)
	}))
	RouteStatus.Register(mux, handle(func(r *http.Request) (any, error) {
		return s.Status(), nil
	}))
	RouteBackups.Register(mux, handle(func(r *http.Request) (any, error) {
		list, err := s.Backups()
		if list == nil {
			list = []Manifest{}
		}
		return list, err
	}))
	RouteBackupCreate.Register(mux, handle(func(r *http.Request) (any, error) {
		return s.BackupNow(r.Context())
	}))
	RouteBackupVerify.Register(mux, handle(func(r *http.Request) (any, error) {
		var req BackupFileRequest
		if err := api.DecodeJSON(r, 1<<20, &req); err != nil {
			return nil, err
		}
		return s.Verify(r.Context(), req.File)
	}))
	RouteBackupRestore.Register(mux, handle(func(r *http.Request) (any, error) {
		var req BackupFileRequest
		if err := api.DecodeJSON(r, 1<<20, &req); err != nil {
			return nil, err
		}
		return s.Restore(r.Context(), req.File, by(req.By))
	}))
}

func by(who string) string {
	if who == "" {
		return "api"
	}
	return who
}

// handle turns a function into a handler that writes its answer as JSON, and its error with
// the status that fits: 400 for bad input, 404 for something missing, 500 otherwise.
func handle(fn func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(r)
		if err != nil {
			api.WriteError(w, toAPIError(err))
			return
		}
		api.WriteJSON(w, http.StatusOK, out)
	}
}

func toAPIError(err error) error {
	var apiErr *api.Error
	var in *InputError
	var rej *RejectedError
	switch {
	case errors.As(err, &rej):
		return api.Errorf(http.StatusUnprocessableEntity, "%s", err.Error())
	case errors.As(err, &apiErr):
		return err
	case errors.As(err, &in):
		return api.Errorf(http.StatusBadRequest, "%s", err.Error())
	case errors.Is(err, ErrNotFound):
		return api.Errorf(http.StatusNotFound, "%s", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return api.Errorf(http.StatusServiceUnavailable, "%s", err.Error())
	}
	return err
}
