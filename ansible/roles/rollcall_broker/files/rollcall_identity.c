/*
 * rollcall_identity: a Mosquitto 2.0 plugin (plugin API v5) that binds an MQTT client's user name and client id to
 * the common name (CN) of the TLS client certificate it connected with.
 *
 * A connection is accepted only when
 *   - the client presented a certificate (the listener's `require_certificate true` and `cafile`/`crlfile` have
 *     already checked that it comes from the site CA and is not revoked),
 *   - its certificate has exactly one CN, and the MQTT user name equals it, and
 *   - the client id equals the user name, or is `<user name>:<session>` for a user named in the plugin option
 *     `session_users` (supervisors: every TUI session has its own id, so two sessions never knock each other off).
 * Anything else is refused (CONNACK "not authorised") with a log line naming the reason.
 *
 * Why a plugin: Mosquitto 2.0.11 cannot do this by configuration alone. `use_identity_as_username` skips every
 * authentication plugin (src/handle_connect.c), and `use_username_as_clientid` gives every session of one user the
 * same id. With `use_identity_as_username false` the broker calls MOSQ_EVT_BASIC_AUTH (mosquitto_unpwd_check).
 *
 * Build: gcc -O2 -Wall -Wextra -fPIC -shared rollcall_identity.c -o rollcall_identity.so -lssl -lcrypto
 *        (Debian: apt-get install gcc mosquitto-dev libssl-dev)
 * Load:  plugin /usr/local/lib/mosquitto/rollcall_identity.so
 *        plugin_opt_session_users alice,bob        (optional; comma-separated)
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define SESSION_MAX 64

struct identity_config {
    mosquitto_plugin_id_t *id;
    char *session_users; /* ",alice,bob," (leading and trailing commas) or NULL */
};

static struct identity_config config;

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++) {
        if (supported_versions[i] == 5) {
            return 5;
        }
    }
    return -1;
}

static bool session_user(const char *username)
{
    if (config.session_users == NULL) {
        return false;
    }
    size_t length = strlen(username);
    const char *at = config.session_users;
    while ((at = strstr(at, username)) != NULL) {
        if (at > config.session_users && at[-1] == ',' && at[length] == ',') {
            return true;
        }
        at++;
    }
    return false;
}

static bool valid_session(const char *session)
{
    size_t length = strlen(session);
    if (length == 0 || length > SESSION_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)session[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.') {
            return false;
        }
    }
    return true;
}

/* The certificate's single CN as a NUL-terminated UTF-8 string (free with OPENSSL_free), or NULL. */
static char *certificate_cn(X509 *cert, const char **why)
{
    X509_NAME *subject = X509_get_subject_name(cert);
    if (subject == NULL) {
        *why = "certificate has no subject";
        return NULL;
    }
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0) {
        *why = "certificate has no common name (CN)";
        return NULL;
    }
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
        *why = "certificate has more than one common name (CN)";
        return NULL;
    }
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    unsigned char *utf8 = NULL;
    int length = ASN1_STRING_to_UTF8(&utf8, data);
    if (length <= 0 || utf8 == NULL) {
        *why = "certificate common name (CN) is not readable";
        return NULL;
    }
    if ((size_t)length != strlen((char *)utf8)) {
        OPENSSL_free(utf8);
        *why = "certificate common name (CN) holds a NUL byte";
        return NULL;
    }
    return (char *)utf8;
}

static int basic_auth(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_basic_auth *ed = event_data;
    const char *client_id = mosquitto_client_id(ed->client);
    const char *address = mosquitto_client_address(ed->client);
    const char *username = ed->username;
    const char *why = NULL;
    char *cn = NULL;

    if (client_id == NULL) {
        client_id = "";
    }
    if (address == NULL) {
        address = "?";
    }
    X509 *cert = mosquitto_client_certificate(ed->client);
    if (cert == NULL) {
        why = "no TLS client certificate";
        goto deny;
    }
    cn = certificate_cn(cert, &why);
    X509_free(cert);
    if (cn == NULL) {
        goto deny;
    }
    if (username == NULL) {
        why = "no user name (it must equal the certificate CN)";
        goto deny;
    }
    if (strcmp(username, cn) != 0) {
        why = "user name differs from the certificate CN";
        goto deny;
    }
    if (strcmp(client_id, username) != 0) {
        size_t length = strlen(username);
        bool own_session = strncmp(client_id, username, length) == 0 && client_id[length] == ':'
                           && valid_session(client_id + length + 1);
        if (!own_session) {
            why = "client id is neither the user name nor <user name>:<session>";
            goto deny;
        }
        if (!session_user(username)) {
            why = "client id <user name>:<session> is allowed only to session users (supervisors)";
            goto deny;
        }
    }
    OPENSSL_free(cn);
    return MOSQ_ERR_SUCCESS;

deny:
    mosquitto_log_printf(MOSQ_LOG_NOTICE,
                         "rollcall_identity: refused client id '%s' user '%s' certificate CN '%s' from %s: %s",
                         client_id, username ? username : "", cn ? cn : "", address, why);
    if (cn != NULL) {
        OPENSSL_free(cn);
    }
    return MOSQ_ERR_AUTH;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                          int option_count)
{
    *userdata = NULL;
    config.id = identifier;
    config.session_users = NULL;
    for (int i = 0; i < option_count; i++) {
        if (strcmp(options[i].key, "session_users") == 0) {
            size_t length = strlen(options[i].value);
            free(config.session_users);
            config.session_users = malloc(length + 3);
            if (config.session_users == NULL) {
                return MOSQ_ERR_NOMEM;
            }
            config.session_users[0] = ',';
            size_t out = 1;
            for (size_t j = 0; j < length; j++) {
                if (!isspace((unsigned char)options[i].value[j])) {
                    config.session_users[out++] = options[i].value[j];
                }
            }
            config.session_users[out++] = ',';
            config.session_users[out] = '\0';
        } else {
            mosquitto_log_printf(MOSQ_LOG_ERR, "rollcall_identity: unknown option plugin_opt_%s (known: session_users)",
                                 options[i].key);
            return MOSQ_ERR_INVAL;
        }
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "rollcall_identity: user name = certificate CN, client id = user name%s",
                         config.session_users ? " (or <user>:<session> for session users)" : "");
    return mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)userdata;
    (void)options;
    (void)option_count;
    free(config.session_users);
    config.session_users = NULL;
    return mosquitto_callback_unregister(config.id, MOSQ_EVT_BASIC_AUTH, basic_auth, NULL);
}
