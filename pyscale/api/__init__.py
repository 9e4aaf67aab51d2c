"""REST API v1 in Headscale v0.27.1's shapes, API-key auth, and the client set-up web pages.

    rest.RestApi(state, registrar, mapper, *, policy_mode, policy_path)   the /api edge
        .authenticated(req) -> Response     TCP listener: Bearer API key, else a bare 401
        .trusted(req) -> Response           unix socket: no key (the local CLI)
        .service.may_have_tag               hook: (node, tag) -> bool, the policy's tagOwners check
    service.HeadscaleService                the 25 operations (handlers)
    shapes                                  records -> protojson dicts (Node adds 0.28's ``tags``)
    protojson                               request decoding and the {"code","message","details"} body
    auth.new_api_key() / ApiKeyVerifier     <prefix>.<secret> keys, bcrypt $2a$10$, constant work
    policytext.validate_policy(text)        the policy engine when present, else HuJSON syntax
    pages.handle(req, server_url)           /apple, /apple/<platform>, /windows, /swagger, the spec
"""
