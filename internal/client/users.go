package client

import (
	"context"
	"net/url"

	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// WhoAmI returns the caller's user and roles.
func (c *Client) WhoAmI(ctx context.Context) (*wire.WhoAmI, error) {
	var out wire.WhoAmI
	return &out, c.call(ctx, "GET", "/v1/whoami", "", nil, &out)
}

// CreateUser adds a user (administrators).
func (c *Client) CreateUser(ctx context.Context, req *wire.CreateUser) (*store.User, error) {
	var out store.User
	return &out, c.call(ctx, "POST", "/v1/users", "", req, &out)
}

// Users lists users (administrators).
func (c *Client) Users(ctx context.Context) ([]*store.User, error) {
	var out wire.UserList
	return out.Users, c.call(ctx, "GET", "/v1/users", "", nil, &out)
}

// CreateToken makes an API token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, req *wire.CreateToken) (*wire.NewToken, error) {
	var out wire.NewToken
	return &out, c.call(ctx, "POST", "/v1/tokens", "", req, &out)
}

// Tokens lists the caller's tokens, or a user's (administrators).
func (c *Client) Tokens(ctx context.Context, user string) ([]*store.Token, error) {
	var out wire.TokenList
	return out.Tokens, c.call(ctx, "GET", "/v1/tokens?"+url.Values{"user": {user}}.Encode(), "", nil, &out)
}

// RevokeToken makes a token useless from now on.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(id), "", nil, nil)
}

// Members lists a project's members.
func (c *Client) Members(ctx context.Context, project string) ([]*wire.MemberInfo, error) {
	var out wire.MemberList
	return out.Members, c.call(ctx, "GET", "/v1/projects/"+url.PathEscape(project)+"/members", "", nil, &out)
}

// PutMember gives a user a role in a project.
func (c *Client) PutMember(ctx context.Context, project, user string, spec *wire.MemberSpec) (*wire.MemberInfo, error) {
	var out wire.MemberInfo
	return &out, c.call(ctx, "PUT", "/v1/projects/"+url.PathEscape(project)+"/members/"+url.PathEscape(user), "", spec, &out)
}

// DeleteMember takes a user's role in a project away.
func (c *Client) DeleteMember(ctx context.Context, project, user string) error {
	return c.call(ctx, "DELETE", "/v1/projects/"+url.PathEscape(project)+"/members/"+url.PathEscape(user), "", nil, nil)
}
