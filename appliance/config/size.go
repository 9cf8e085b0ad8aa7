package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
)

// sizeValue is a flag holding a byte count, written as a plain number of bytes or as a
// Kubernetes quantity: 512Mi, 10Gi, 1G, 500M.
type sizeValue struct{ p *int64 }

func (v sizeValue) String() string {
	if v.p == nil {
		return "0"
	}
	return resource.NewQuantity(*v.p, resource.BinarySI).String()
}

func (v sizeValue) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a size: use bytes or a unit such as 512Mi, 10Gi or 1G", s)
	}
	n, ok := q.AsInt64()
	if !ok || q.Sign() < 0 {
		return fmt.Errorf("%q is not a size in whole bytes from 0 up", s)
	}
	*v.p = n
	return nil
}

func (sizeValue) Type() string { return "size" }
