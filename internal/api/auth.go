package api

// Identity answers GET /v1/whoami: whether the server requires a token, and
// if it does, the token the request carried (never its secret).
type Identity struct {
	Auth bool   `json:"auth"`           // the server requires tokens
	ID   string `json:"id,omitempty"`   // the token's id
	Name string `json:"name,omitempty"` // the token's name
	Role string `json:"role,omitempty"` // client, worker, read or admin
}
