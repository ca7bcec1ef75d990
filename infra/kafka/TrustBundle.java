// Turn a PEM bundle of CA certificates into a PKCS12 trust store, in one JVM start:
//   java TrustBundle.java <bundle.pem> <truststore.p12> <password>
// The broker image's build uses it when it is handed the machine's CA bundle as a build secret (a network that
// re-signs TLS), so Maven trusts what pip trusts. The trust store lives in /tmp of one build step only.
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;

public class TrustBundle {
    public static void main(String[] args) throws Exception {
        char[] password = args[2].toCharArray();
        KeyStore store = KeyStore.getInstance("PKCS12");
        store.load(null, password);
        int n = 0;
        try (FileInputStream in = new FileInputStream(args[0])) {
            for (Certificate cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                store.setCertificateEntry("ca-" + n++, cert);
            }
        }
        try (FileOutputStream out = new FileOutputStream(args[1])) {
            store.store(out, password);
        }
        System.out.println(n + " certificates in " + args[1]);
    }
}
