package ecssim

import (
	"encoding/json"
	"net/http"
	"time"
)

// The admin surface, served under /_sim/ on the same listener as the ECS
// API. It is not part of ECS; it lets the ecssim command be seeded, observed
// and faulted from outside the process:
//
//	GET    /_sim/calls                       {"total":N,"calls":{op:n},"throttled":{op:n},"describedServices":N}
//	POST   /_sim/calls/reset                 reset the counters
//	GET    /_sim/services/{cluster}/{service} ServiceState plus "images": {container: image}
//	GET    /_sim/taskdefinitions/{ref...}    stored task definition document
//	POST   /_sim/seed                        body: a Seed document (see LoadSeed)
//	POST   /_sim/images                      body: a SeedImage (see PushImage)
//	POST   /_sim/advance                     AdvanceRollouts; {"completed":N}
//	POST   /_sim/faults                      body: AdminFault
//	DELETE /_sim/faults                      clear all faults
//
// The calls, services, taskdefinitions, seed and images endpoints act on the
// default account, or on the account named by the query parameter
// ?account=<id>. Admin requests are not counted as API calls.

// AdminFault is the body of POST /_sim/faults.
type AdminFault struct {
	Operation string `json:"operation"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	Times     int    `json:"times"`
	// LatencyMillis, if set, also sets the operation's latency.
	LatencyMillis int `json:"latencyMillis,omitempty"`
}

// AdminService is the body of GET /_sim/services/{cluster}/{service}.
type AdminService struct {
	ServiceState
	// Images maps container names to images of the service's current task
	// definition.
	Images map[string]string `json:"images"`
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		v := s.adminAccount(r)
		calls, throttled, total := v.callCounts()
		adminJSON(w, http.StatusOK, map[string]any{"total": total, "calls": calls, "throttled": throttled,
			"describedServices": v.DescribedServices()})
	})
	mux.HandleFunc("POST /_sim/calls/reset", func(w http.ResponseWriter, r *http.Request) {
		s.adminAccount(r).ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sim/services/{cluster}/{service}", func(w http.ResponseWriter, r *http.Request) {
		v := s.adminAccount(r)
		st, ok := v.Service(r.PathValue("cluster"), r.PathValue("service"))
		if !ok {
			adminError(w, http.StatusNotFound, "service not found")
			return
		}
		images := map[string]string{}
		s.mu.Lock()
		if td, ok := v.a.lookupTaskDefLocked(st.TaskDefinitionARN); ok {
			images = td.containerImages()
		}
		s.mu.Unlock()
		adminJSON(w, http.StatusOK, AdminService{ServiceState: st, Images: images})
	})
	mux.HandleFunc("GET /_sim/taskdefinitions/{ref...}", func(w http.ResponseWriter, r *http.Request) {
		td, ok := s.adminAccount(r).TaskDefinition(r.PathValue("ref"))
		if !ok {
			adminError(w, http.StatusNotFound, "task definition not found")
			return
		}
		adminJSON(w, http.StatusOK, td)
	})
	mux.HandleFunc("POST /_sim/seed", func(w http.ResponseWriter, r *http.Request) {
		if err := s.adminAccount(r).LoadSeed(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/images", func(w http.ResponseWriter, r *http.Request) {
		var img SeedImage
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&img); err != nil {
			adminError(w, http.StatusBadRequest, "body must be {\"repository\":...,\"tag\":...,\"digest\":...}")
			return
		}
		if err := s.adminAccount(r).PushImage(img.Repository, img.Tag, img.Digest); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/advance", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, http.StatusOK, map[string]int{"completed": s.AdvanceRollouts()})
	})
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f AdminFault
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil || f.Operation == "" {
			adminError(w, http.StatusBadRequest, "body must be {\"operation\":...,\"status\",\"code\",\"message\",\"times\"}")
			return
		}
		if f.Code != "" || f.Status != 0 || f.LatencyMillis == 0 {
			s.InjectFault(f.Operation, Fault{Status: f.Status, Code: f.Code, Message: f.Message, Times: f.Times})
		}
		if f.LatencyMillis > 0 {
			s.SetLatency(f.Operation, time.Duration(f.LatencyMillis)*time.Millisecond)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/_sim/", func(w http.ResponseWriter, _ *http.Request) {
		adminError(w, http.StatusNotFound, "unknown admin endpoint")
	})
	return mux
}

// adminAccount returns the account named by the request's ?account=
// parameter, or the default account.
func (s *Server) adminAccount(r *http.Request) *AccountView {
	if id := r.URL.Query().Get("account"); id != "" {
		return s.Account(id)
	}
	return s.DefaultAccount()
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	adminJSON(w, status, map[string]string{"error": msg})
}
