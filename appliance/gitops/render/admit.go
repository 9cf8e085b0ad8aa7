package render

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// clusterScoped lists the cluster-scoped kinds of Kubernetes and of common add-ons, by
// group/kind. The renderer has no cluster to ask, and an app may create none of them: they
// act outside its namespace.
var clusterScoped = map[string]bool{
	"/Namespace": true, "/Node": true, "/PersistentVolume": true, "/ComponentStatus": true,
	"rbac.authorization.k8s.io/ClusterRole":                         true,
	"rbac.authorization.k8s.io/ClusterRoleBinding":                  true,
	"apiextensions.k8s.io/CustomResourceDefinition":                 true,
	"apiregistration.k8s.io/APIService":                             true,
	"admissionregistration.k8s.io/MutatingWebhookConfiguration":     true,
	"admissionregistration.k8s.io/ValidatingWebhookConfiguration":   true,
	"admissionregistration.k8s.io/ValidatingAdmissionPolicy":        true,
	"admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding": true,
	"admissionregistration.k8s.io/MutatingAdmissionPolicy":          true,
	"admissionregistration.k8s.io/MutatingAdmissionPolicyBinding":   true,
	"storage.k8s.io/StorageClass":                                   true,
	"storage.k8s.io/CSIDriver":                                      true,
	"storage.k8s.io/CSINode":                                        true,
	"storage.k8s.io/VolumeAttachment":                               true,
	"storage.k8s.io/VolumeAttributesClass":                          true,
	"scheduling.k8s.io/PriorityClass":                               true,
	"node.k8s.io/RuntimeClass":                                      true,
	"networking.k8s.io/IngressClass":                                true,
	"networking.k8s.io/IPAddress":                                   true,
	"networking.k8s.io/ServiceCIDR":                                 true,
	"certificates.k8s.io/CertificateSigningRequest":                 true,
	"certificates.k8s.io/ClusterTrustBundle":                        true,
	"flowcontrol.apiserver.k8s.io/FlowSchema":                       true,
	"flowcontrol.apiserver.k8s.io/PriorityLevelConfiguration":       true,
	"resource.k8s.io/DeviceClass":                                   true,
	"resource.k8s.io/ResourceSlice":                                 true,
	"policy/PodSecurityPolicy":                                      true,
	"cert-manager.io/ClusterIssuer":                                 true,
	"external-secrets.io/ClusterSecretStore":                        true,
	"external-secrets.io/ClusterExternalSecret":                     true,
}

// admit refuses objects an app environment may not create and puts the others in ns.
func admit(objs []*unstructured.Unstructured, ns string) error {
	var errs []error
	seen := map[string]bool{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		id := fmt.Sprintf("%s/%s", gvk.Kind, o.GetName())
		if gvk.Kind == "" || o.GetAPIVersion() == "" {
			errs = append(errs, &Error{Key: id, Reason: "rendered object has no apiVersion or kind"})
			continue
		}
		if o.GetName() == "" {
			errs = append(errs, &Error{Key: id, Reason: "rendered object has no metadata.name"})
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(o.GetName()); len(msgs) > 0 && gvk.Kind != "ConfigMap" && gvk.Kind != "Secret" {
			errs = append(errs, &Error{Key: id, Reason: "invalid metadata.name: " + strings.Join(msgs, "; ")})
			continue
		}
		if clusterScoped[gvk.Group+"/"+gvk.Kind] {
			errs = append(errs, &Error{Key: id, Reason: fmt.Sprintf(
				"refused: %s is cluster-scoped; an app may only create objects in its namespace %q", gvk.Kind, ns)})
			continue
		}
		if got := o.GetNamespace(); got != "" && got != ns {
			errs = append(errs, &Error{Key: id, Reason: fmt.Sprintf(
				"refused: metadata.namespace is %q; an app may only create objects in its namespace %q", got, ns)})
			continue
		}
		o.SetNamespace(ns)
		key := gvk.Group + "/" + id
		if seen[key] {
			errs = append(errs, &Error{Key: id, Reason: "rendered twice; names must be unique per kind"})
			continue
		}
		seen[key] = true
	}
	return errors.Join(errs...)
}
