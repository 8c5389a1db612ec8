package ecssim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The STS subset: AssumeRole and GetCallerIdentity over the awsQuery
// protocol (POST / with a form-encoded body Action=…&Version=2011-06-15…,
// XML responses, errors as <ErrorResponse><Error><Type><Code><Message>), on
// the same listener as ECS, so the unmodified
// github.com/aws/aws-sdk-go-v2/service/sts client (and stscreds) can use it
// with BaseEndpoint.

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// role is an assumable IAM role registered with WithRole.
type role struct {
	arn        string
	account    string
	name       string
	externalID string
	id         string // AROA… unique id
}

// issuedKey is a set of temporary credentials issued by AssumeRole.
type issuedKey struct {
	accessKeyID  string
	sessionToken string
	account      string
	role         *role
	session      string
	expires      time.Time
}

// caller is the identity a request was signed with.
type caller struct {
	accessKeyID string     // "" for anonymous requests
	key         *issuedKey // set for credentials issued by AssumeRole
}

func (c *caller) arn(defaultAccount string) string {
	if c.key != nil {
		return assumedRoleARN(c.key.role, c.key.session)
	}
	return "arn:aws:iam::" + defaultAccount + ":root"
}

func assumedRoleARN(r *role, session string) string {
	return "arn:aws:sts::" + r.account + ":assumed-role/" + r.name + "/" + session
}

var roleARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})$`)

// WithRole registers an IAM role that STS AssumeRole may assume, in the
// account named by its ARN (arn:aws:iam::<account>:role/<path/><name>),
// which is created if needed. A non-empty externalID must be passed as
// ExternalId to assume it; a wrong or missing one, like an unregistered
// role, is refused with AccessDenied. New panics on a malformed ARN.
func WithRole(roleARN, externalID string) Option {
	return func(s *Server) {
		m := roleARNPattern.FindStringSubmatch(roleARN)
		if m == nil {
			s.roleErr = fmt.Errorf("ecssim: WithRole: invalid role ARN %q", roleARN)
			return
		}
		s.roles[roleARN] = &role{
			arn: roleARN, account: m[1], name: m[2], externalID: externalID,
			id: "AROA" + randomID(17),
		}
	}
}

// authError is a rejection of a request's credentials.
type authError struct{ expired bool }

// forProtocol renders the rejection as the service concerned answers it:
// ECS and ECR (awsJson) answer 400 ExpiredTokenException or
// UnrecognizedClientException, STS (awsQuery) 403 ExpiredToken or
// InvalidClientTokenId.
func (e *authError) forProtocol(p protocol) *apiError {
	switch {
	case p == protoQuery && e.expired:
		return &apiError{Status: http.StatusForbidden, Code: "ExpiredToken", Message: "The security token included in the request is expired"}
	case p == protoQuery:
		return &apiError{Status: http.StatusForbidden, Code: "InvalidClientTokenId", Message: "The security token included in the request is invalid."}
	case e.expired:
		return &apiError{Status: http.StatusBadRequest, Code: "ExpiredTokenException", Message: "The security token included in the request is expired"}
	default:
		return &apiError{Status: http.StatusBadRequest, Code: "UnrecognizedClientException", Message: "The security token included in the request is invalid."}
	}
}

// accessKeyID returns the access key id of a SigV4 Authorization header
// ("AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, …").
func accessKeyID(authorization string) string {
	_, rest, ok := strings.Cut(authorization, "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, "/")
	return strings.TrimSpace(key)
}

// callerLocked resolves the account a request acts in (see Server).
func (s *Server) callerLocked(r *http.Request, now time.Time) (*account, *caller, *authError) {
	c := &caller{accessKeyID: accessKeyID(r.Header.Get("Authorization"))}
	if c.accessKeyID == "" {
		return s.def, c, nil
	}
	if k, ok := s.keys[c.accessKeyID]; ok {
		c.key = k
		a := s.accountLocked(k.account)
		switch {
		case !now.Before(k.expires):
			return a, c, &authError{expired: true}
		case r.Header.Get("X-Amz-Security-Token") != k.sessionToken:
			return a, c, &authError{}
		}
		return a, c, nil
	}
	if strings.HasPrefix(c.accessKeyID, "ASIA") {
		return s.def, c, &authError{} // temporary credentials we never issued
	}
	return s.def, c, nil
}

// stsRequest is the input of an STS operation.
type stsRequest struct {
	caller    *caller
	form      url.Values
	requestID string
}

// stsHandler implements one STS operation; it runs with the server's lock
// held and returns an XML document.
type stsHandler func(a *account, req *stsRequest) (any, error)

var stsOperations = map[string]stsHandler{
	"AssumeRole":        (*account).opAssumeRole,
	"GetCallerIdentity": (*account).opGetCallerIdentity,
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type assumeRoleResponse struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleResponse"`
	Result  struct {
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			SessionToken    string `xml:"SessionToken"`
			Expiration      string `xml:"Expiration"`
		} `xml:"Credentials"`
		AssumedRoleUser struct {
			AssumedRoleID string `xml:"AssumedRoleId"`
			Arn           string `xml:"Arn"`
		} `xml:"AssumedRoleUser"`
	} `xml:"AssumeRoleResult"`
	ResponseMetadata responseMetadata `xml:"ResponseMetadata"`
}

type getCallerIdentityResponse struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ GetCallerIdentityResponse"`
	Result  struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	} `xml:"GetCallerIdentityResult"`
	ResponseMetadata responseMetadata `xml:"ResponseMetadata"`
}

var (
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDPattern  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
)

func errValidation(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "ValidationError", Message: fmt.Sprintf(format, args...)}
}

func (a *account) opAssumeRole(req *stsRequest) (any, error) {
	f := req.form
	roleARN, session, externalID := f.Get("RoleArn"), f.Get("RoleSessionName"), f.Get("ExternalId")
	switch {
	case roleARN == "":
		return nil, errValidation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	case !sessionNamePattern.MatchString(session):
		return nil, errValidation("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64", session)
	case f.Has("ExternalId") && (len(externalID) < 2 || len(externalID) > 1224 || !externalIDPattern.MatchString(externalID)):
		return nil, errValidation("1 validation error detected: Value '%s' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]* and have length between 2 and 1224", externalID)
	}
	duration := 3600
	if d := f.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 900 || n > 43200 {
			return nil, errValidation("1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", d)
		}
		duration = n
	}
	r, ok := a.srv.roles[roleARN]
	if !ok || r.externalID != "" && externalID != r.externalID {
		return nil, &apiError{Status: http.StatusForbidden, Code: "AccessDenied",
			Message: "User: " + req.caller.arn(a.id) + " is not authorized to perform: sts:AssumeRole on resource: " + roleARN}
	}

	k := &issuedKey{
		accessKeyID:  "ASIA" + randomID(16),
		sessionToken: randomToken(96),
		account:      r.account,
		role:         r,
		session:      session,
		expires:      a.now().Add(time.Duration(duration) * time.Second),
	}
	a.srv.keys[k.accessKeyID] = k
	a.srv.accountLocked(r.account)

	var out assumeRoleResponse
	out.Result.Credentials.AccessKeyID = k.accessKeyID
	out.Result.Credentials.SecretAccessKey = randomToken(30)
	out.Result.Credentials.SessionToken = k.sessionToken
	out.Result.Credentials.Expiration = k.expires.UTC().Format(time.RFC3339)
	out.Result.AssumedRoleUser.AssumedRoleID = r.id + ":" + session
	out.Result.AssumedRoleUser.Arn = assumedRoleARN(r, session)
	out.ResponseMetadata.RequestID = req.requestID
	return out, nil
}

func (a *account) opGetCallerIdentity(req *stsRequest) (any, error) {
	var out getCallerIdentityResponse
	out.Result.Account = a.id
	out.Result.Arn = req.caller.arn(a.id)
	out.Result.UserID = a.id
	if k := req.caller.key; k != nil {
		out.Result.UserID = k.role.id + ":" + k.session
	}
	out.ResponseMetadata.RequestID = req.requestID
	return out, nil
}

// writeXML writes an awsQuery response document.
func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte("<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code></Error></ErrorResponse>")
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type queryErrorResponse struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

// writeQueryError writes an awsQuery error: <ErrorResponse><Error><Type>
// (Sender for 4xx, Receiver for 5xx)<Code><Message></Error><RequestId>.
func writeQueryError(w http.ResponseWriter, err error, requestID string) {
	ae := asAPIError(err)
	var out queryErrorResponse
	out.Error.Type = "Sender"
	if ae.Status >= 500 {
		out.Error.Type = "Receiver"
	}
	out.Error.Code, out.Error.Message = ae.Code, ae.Message
	out.RequestID = requestID
	writeXML(w, ae.Status, out)
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// randomID returns n random characters of [A-Z2-7], like AWS access key
// and unique ids.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// randomToken returns a random base64 string of n random bytes.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
