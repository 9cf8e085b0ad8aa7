package frontdoor

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// serviceIndex indexes the EndpointSlice cache by the Service a slice belongs to
// ("namespace/name", from the kubernetes.io/service-name label).
const serviceIndex = "service"

func indexByService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// noEndpointsError means the Service exists but none of its pods can take a request right now
// (scaled to zero, crashing, or between the old pod leaving and the new one becoming ready).
// The front door answers 503, not 502: the route is right and asking again soon may succeed.
type noEndpointsError struct{ namespace, service string }

func (e *noEndpointsError) Error() string {
	return "no ready endpoints for Service " + e.namespace + "/" + e.service
}

// endpointPicker is the default resolver. It sends each request straight to a pod, as
// ingress-nginx does, instead of to the ClusterIP: the proxy keeps connections alive, and
// conntrack pins every connection to a ClusterIP to the pod its first packet was DNATed to, so
// load would not spread over replicas and a rollout's old pod would keep getting requests until
// it died. Both caches are read on every request, so endpoint changes apply to the next one.
type endpointPicker struct {
	services corelisters.ServiceLister
	slices   cache.Indexer // EndpointSlices, indexed by serviceIndex
}

// candidate is an endpoint that may take a request.
type candidate struct {
	addr string
	port int32
}

// pick returns host:port of one pod endpoint of b's Service port: round-robin (by b.next) over
// the ready endpoints or, when none is ready, over the serving ones that are terminating, so the
// last pod of a rollout still answers while it drains. avoid ("host:port" or "") is left out,
// so a retry after a failed dial goes elsewhere. The error is a *noEndpointsError when the
// Service has no endpoint to offer.
func (p *endpointPicker) pick(b *backend, avoid string) (string, error) {
	svc, err := p.services.Services(b.namespace).Get(b.service)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("service %s/%s does not exist", b.namespace, b.service)
		}
		return "", fmt.Errorf("cannot read service %s/%s: %w", b.namespace, b.service, err)
	}
	sp, err := servicePort(svc, b.port)
	if err != nil {
		return "", err
	}
	objs, err := p.slices.ByIndex(serviceIndex, b.namespace+"/"+b.service)
	if err != nil {
		return "", fmt.Errorf("cannot read the EndpointSlices of service %s/%s: %w", b.namespace, b.service, err)
	}
	// The index returns slices in map order; sorting keeps the round-robin order stable.
	if len(objs) > 1 {
		slices.SortFunc(objs, func(x, y any) int {
			return strings.Compare(x.(*discoveryv1.EndpointSlice).Name, y.(*discoveryv1.EndpointSlice).Name)
		})
	}
	// A dual-stack Service has one slice per family listing the same pods; using only the
	// primary family counts each pod once.
	var family discoveryv1.AddressType
	if len(svc.Spec.IPFamilies) > 0 {
		family = discoveryv1.AddressType(svc.Spec.IPFamilies[0])
	}
	avoidHost, avoidPort := splitAvoid(avoid)

	// Fixed-size buffers keep the common case free of allocations. An endpoint that briefly
	// appears in two slices (the controller moving it) counts twice; that is not worth a set.
	var readyBuf [32]candidate
	var drainingBuf [8]candidate
	ready, draining := readyBuf[:0], drainingBuf[:0]
	for _, o := range objs {
		s := o.(*discoveryv1.EndpointSlice)
		port, ok := slicePort(s, sp.Name, family)
		if !ok {
			continue
		}
		for i := range s.Endpoints {
			ep := &s.Endpoints[i]
			if len(ep.Addresses) == 0 { // the API requires one; consumers use the first
				continue
			}
			c := candidate{ep.Addresses[0], port}
			if c.addr == avoidHost && c.port == avoidPort {
				continue
			}
			switch cond := ep.Conditions; {
			case isTrue(cond.Ready, true) && !isTrue(cond.Terminating, false):
				ready = append(ready, c)
			case isTrue(cond.Serving, true) && isTrue(cond.Terminating, false):
				draining = append(draining, c)
			}
		}
	}
	list := ready
	if len(list) == 0 {
		list = draining
	}
	if len(list) == 0 {
		return "", &noEndpointsError{namespace: b.namespace, service: b.service}
	}
	c := list[(b.next.Add(1)-1)%uint64(len(list))]
	return net.JoinHostPort(c.addr, strconv.Itoa(int(c.port))), nil
}

// isTrue reads an optional condition; nil means def, as the EndpointSlice API documents (nil
// ready and serving mean true, nil terminating means false).
func isTrue(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// slicePort returns the pod port a slice lists under name (the Service port's name, "" for a
// Service's single unnamed port). Pods behind a named targetPort may listen on different
// numbers, so the number comes from each slice. Slices of another address family than family
// (when set) and FQDN slices are skipped.
func slicePort(s *discoveryv1.EndpointSlice, name string, family discoveryv1.AddressType) (int32, bool) {
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		if family != "" && s.AddressType != family {
			return 0, false
		}
	default:
		return 0, false
	}
	for _, p := range s.Ports {
		if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue
		}
		if p.Name == nil && name == "" || p.Name != nil && *p.Name == name {
			return *p.Port, true
		}
	}
	return 0, false
}

// splitAvoid splits the host:port a retry must not use; "" avoids nothing.
func splitAvoid(hostport string) (string, int32) {
	if hostport == "" {
		return "", 0
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return "", 0
	}
	return host, int32(n)
}

// servicePort finds the Service port a backend names, by number or name. ExternalName Services
// are refused: the front door runs on the host, and an ExternalName such as localhost would
// expose host-only services (console, registry) to the network.
func servicePort(svc *corev1.Service, port networkingv1.ServiceBackendPort) (*corev1.ServicePort, error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, fmt.Errorf("service %s/%s is of type ExternalName, which the front door does not serve", svc.Namespace, svc.Name)
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if (port.Name != "" && p.Name == port.Name) || (port.Name == "" && p.Port == port.Number) {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				return nil, fmt.Errorf("service %s/%s port %s is %s, not TCP", svc.Namespace, svc.Name, portString(port), p.Protocol)
			}
			return p, nil
		}
	}
	return nil, fmt.Errorf("service %s/%s has no port %s", svc.Namespace, svc.Name, portString(port))
}
