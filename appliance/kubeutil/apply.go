// Package kubeutil holds small helpers for gluebox components that write to the cluster.
// Anything under appliance may import it.
package kubeutil

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// FieldManager is the server-side-apply field manager of everything gluebox writes itself.
const FieldManager = "gluebox"

// Apply server-side-applies obj (which must carry apiVersion and kind) through rc, the REST
// client of obj's API group, as resource (plural) in namespace ("" for cluster-scoped objects).
// It retries briefly while the API is still settling.
func Apply(ctx context.Context, rc rest.Interface, resource, namespace, name string, obj any) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("cannot encode %s %s: %w", resource, name, err)
	}
	for attempt := 0; ; attempt++ {
		req := rc.Patch(types.ApplyPatchType).Resource(resource).Name(name).
			Param("fieldManager", FieldManager).Param("force", "true").Body(body)
		if namespace != "" {
			req = req.Namespace(namespace)
		}
		err = req.Do(ctx).Error()
		if err == nil {
			return nil
		}
		if attempt >= 20 || !(apierrors.IsConflict(err) || apierrors.IsForbidden(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsNotFound(err)) {
			return fmt.Errorf("cannot apply %s %s/%s: %w", resource, namespace, name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
