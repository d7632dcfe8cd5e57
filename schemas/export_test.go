package schemas

// Test fixtures for the external test package (ledger-state benchmark).
var (
	SampleEvents        = sampleEvents
	SampleOrderAccepted = sampleOrderAccepted
)
