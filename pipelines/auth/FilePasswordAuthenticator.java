package reelhouse.auth;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;

/**
 * HiveServer2 CUSTOM authentication for `reelhouse serve`: user names and PBKDF2-SHA256 password
 * hashes in a file the operator controls (REELHOUSE_AUTH_FILE), one user per line:
 * user:pbkdf2_sha256:ITERATIONS:SALT_HEX:HASH_HEX (written by `reelhouse passwd`). The file is read
 * at every login, so adding or removing a user needs no restart.
 */
public class FilePasswordAuthenticator implements PasswdAuthenticationProvider {
    @Override
    public void Authenticate(String user, String password) throws AuthenticationException {
        String file = System.getenv("REELHOUSE_AUTH_FILE");
        if (file == null || user == null || password == null) {
            throw new AuthenticationException("authentication failed");
        }
        List<String> lines;
        try {
            lines = Files.readAllLines(Paths.get(file), StandardCharsets.UTF_8);
        } catch (Exception e) {
            throw new AuthenticationException("authentication failed");
        }
        for (String line : lines) {
            String[] parts = line.trim().split(":");
            if (parts.length != 5 || !parts[0].equals(user) || !parts[1].equals("pbkdf2_sha256")) {
                continue;
            }
            try {
                int iterations = Integer.parseInt(parts[2]);
                byte[] salt = HexFormat.of().parseHex(parts[3]);
                byte[] expected = HexFormat.of().parseHex(parts[4]);
                PBEKeySpec spec = new PBEKeySpec(password.toCharArray(), salt, iterations,
                        expected.length * 8);
                byte[] actual = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256")
                        .generateSecret(spec).getEncoded();
                if (MessageDigest.isEqual(expected, actual)) {
                    return;
                }
            } catch (Exception e) {
                break;
            }
        }
        throw new AuthenticationException("authentication failed");
    }
}
