package main

// componentGroups returns the benchmarks of components that bring their own RunBench.
func componentGroups() []group { return nil }
